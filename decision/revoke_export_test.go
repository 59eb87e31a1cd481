package decision

// CheckRevoked runs only the revocation step for tok, so benchmarks can
// measure its cost apart from the rest of Decide.
func CheckRevoked(e *Engine, tok *Token) Code {
	code, _ := e.checkRevoked(e.policy.Load(), tok, e.clock())
	return code
}
