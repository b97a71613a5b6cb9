Console.WriteLine("tunegw");
