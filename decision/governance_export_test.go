package decision

// CheckDrift runs only the drift check of a decision Decide already made,
// so that benchmarks can measure its cost apart from the rest of Decide.
func CheckDrift(e *Engine, r *Request, d *Decision) Code {
	code, _ := e.checkDrift(r, d, e.clock())
	return code
}
