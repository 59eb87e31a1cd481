package server

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/scopegate/scopegate/server/authzen"
)

// Through the HTTP endpoints, a body whose members encoding/json would
// fold or override ({"id":"mallory","ID":"alice"}) is refused with 400
// naming the member, never decided for either spelling.
func TestAuthZENRefusesFoldedMembers(t *testing.T) {
	e := startHTTPE2E(t, nil)
	good := mint(t, e.signer, "alice", "app", "items:read", time.Now(), time.Hour)
	item1 := `"resource":{"type":"http_path","id":"/api/items/1"}`
	for _, tc := range []struct {
		name, path, body, field string
	}{
		{"id and ID", authzen.EvaluationPath,
			`{"subject":{"type":"user","id":"mallory","ID":"alice","properties":{"token":"` + good + `"}},"action":{"name":"GET"},` + item1 + `}`, "subject.ID"},
		{"token twice", authzen.EvaluationPath,
			`{"subject":{"type":"user","id":"alice","properties":{"token":"x","token":"` + good + `"}},"action":{"name":"GET"},` + item1 + `}`, "subject.properties.token"},
		{"Token alone", authzen.EvaluationPath,
			`{"subject":{"type":"user","id":"alice","properties":{"Token":"` + good + `"}},"action":{"name":"GET"},` + item1 + `}`, "subject.properties.Token"},
		{"batch item method", authzen.EvaluationsPath,
			`{"subject":{"type":"user","id":"alice","properties":{"token":"` + good + `"}},` + item1 + `,"evaluations":[{"action":{"name":"GET","properties":{"method":"GET","METHOD":"DELETE"}}}]}`,
			"evaluations[0].action.properties.METHOD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.do(t, "POST", tc.path, []byte(tc.body), "Content-Type", "application/json")
			b := readBody(t, resp)
			var eb authzen.ErrorBody
			if resp.StatusCode != 400 || json.Unmarshal(b, &eb) != nil || eb.Field != tc.field {
				t.Fatalf("status %d body %s; want 400 naming %s", resp.StatusCode, b, tc.field)
			}
		})
	}
}
