package decision

// Reject returns the deny of a request that was refused without being
// decided: it could not be translated, it is over a server limit, or its
// decision ran past the server's time bound. pol is the policy in force
// (its version is reported with the deny); detail is the message naming
// the field or limit at fault. A Reject never allows, and never claims OK.
//
// Servers build every such deny here rather than by hand, so that a
// refused request carries the same fields as a decided one wherever it is
// answered, counted and audited.
func Reject(pol *Policy, code Code, detail string) Decision {
	if code == OK {
		code = Internal
	}
	return Decision{Code: code, Detail: detail, Policy: pol}
}
