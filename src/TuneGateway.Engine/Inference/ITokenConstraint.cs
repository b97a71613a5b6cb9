namespace TuneGateway.Engine.Inference;

/// <summary>
/// A per-request restriction on which tokens may come next (constrained decoding). The scheduler
/// asks for <see cref="AllowedTokens"/> off its thread, while the model's forward pass runs, and
/// calls <see cref="Accept"/> with each token picked; never both at once.
/// </summary>
public interface ITokenConstraint
{
    /// <summary>
    /// The tokens that can continue a valid output from here; end-of-sequence only once the output
    /// is complete. Never empty: where nothing can continue (a dead end), end-of-sequence alone,
    /// with <see cref="IsComplete"/> false.
    /// </summary>
    TokenMask AllowedTokens();

    /// <summary>Advances past a picked token.</summary>
    void Accept(int tokenId);

    /// <summary>Whether the output so far is a complete valid output (end-of-sequence may end it).</summary>
    bool IsComplete { get; }
}
