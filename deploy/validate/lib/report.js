"use strict";
// Collects findings with the file (relative to the repository root) and, where known, the line.

const path = require("path");

class Report {
  constructor(root) {
    this.root = root;
    this.errors = [];
    this.notes = [];
  }

  rel(file) {
    const r = path.relative(this.root, file);
    return r.startsWith("..") ? file : r.split(path.sep).join("/");
  }

  /** Records an error. `where` is a file path, optionally with `line` (1-based). */
  error(file, line, subject, message) {
    const loc = line ? `${this.rel(file)}:${line}` : this.rel(file);
    this.errors.push(subject ? `${loc}: ${subject}: ${message}` : `${loc}: ${message}`);
  }

  note(message) {
    this.notes.push(message);
  }
}

module.exports = { Report };
