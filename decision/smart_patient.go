package decision

// SMARTPatient returns the patient a decision on a SMART route concerned,
// for the audit record: the token's launch patient (the claim named by
// the route's smart.patient_claim, default patient) when it is a valid
// FHIR id, else "". Decisions on other routes, and tokens without a
// launch patient (user/ and system/ access), return "".
func (d *Decision) SMARTPatient() string {
	if d.Token == nil || d.Route == nil || d.Route.smart == nil {
		return ""
	}
	p, _ := d.Token.Claims()[d.Route.smart.claim].(string)
	if !isFHIRID(p) {
		return ""
	}
	return p
}
