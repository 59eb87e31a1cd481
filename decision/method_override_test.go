package decision

import "testing"

func TestMethodOverrideAgrees(t *testing.T) {
	for _, tc := range []struct {
		override, method string
		want             bool
	}{
		{"GET", "GET", true},
		{"get", "GET", true},
		{" GET ", "GET", true},
		{"GET, GET", "GET", true},
		{"", "GET", true},
		{",", "GET", true},
		{"DELETE", "GET", false},
		{"GET, DELETE", "GET", false},
		{"GET,DELETE", "GET", false},
		{"GETX", "GET", false},
		{"G ET", "GET", false},
	} {
		if got := methodOverrideAgrees(tc.override, tc.method); got != tc.want {
			t.Errorf("methodOverrideAgrees(%q, %q) = %v, want %v", tc.override, tc.method, got, tc.want)
		}
	}
	for _, name := range []string{"X-HTTP-Method-Override", "x-http-method", "X-METHOD-OVERRIDE"} {
		if !IsMethodOverrideHeader(name) {
			t.Errorf("%s is not recognized", name)
		}
	}
	for _, name := range []string{"X-HTTP-Method-Overrides", "X_HTTP_Method", "X-Method", ""} {
		if IsMethodOverrideHeader(name) {
			t.Errorf("%s is taken for a method-override header", name)
		}
	}
	var r Request
	r.AddMethodOverride("GET")
	r.AddMethodOverride("DELETE")
	if r.MethodOverride != "GET, DELETE" {
		t.Errorf("joined %q", r.MethodOverride)
	}
}
