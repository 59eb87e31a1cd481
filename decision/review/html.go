package review

import (
	"bytes"
	"encoding/json"
	"html/template"
	"io"
	"strconv"
)

// WriteHTML writes r as one self-contained HTML page: inline CSS and
// script, no external asset, so it can be mailed to an auditor or
// attached to a ticket. The tables are rendered here (readable without
// script); the script adds sorting (click a column header), a usage chart
// per client (inline SVG drawn from the embedded report JSON) and totals
// it computes from that JSON, so the page shows what the JSON says.
func WriteHTML(w io.Writer, r *Report) error {
	data, err := json.Marshal(r) // escapes <, > and & so it cannot end the script
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, struct {
		*Report
		JSON template.JS
	}{r, template.JS(data)}); err != nil {
		return err
	}
	_, err = w.Write(b.Bytes())
	return err
}

var pageTemplate = template.Must(template.New("review").Funcs(template.FuncMap{
	"grant": grantText,
	"date":  dateOf,
	"idle": func(n int) string {
		if n < 0 {
			return "-"
		}
		return strconv.Itoa(n)
	},
}).Parse(pageHTML))

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Access review: {{.Policy.Path}}</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#1d2330;max-width:1400px}
h1{font-size:1.6em;margin:0 0 .2em}h2{font-size:1.2em;margin:2em 0 .4em;border-bottom:1px solid #d8dce5;padding-bottom:.2em}
.meta{color:#566}
table{border-collapse:collapse;margin:.6em 0;width:100%}
th,td{border:1px solid #d8dce5;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f2f4f8;cursor:pointer;user-select:none;white-space:nowrap}
th.asc::after{content:" \25B2"}th.desc::after{content:" \25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.a-keep{color:#17622d}.a-narrow{color:#8a5a00}.a-renew{color:#0b5394}.a-revoke{color:#a61b1b}
.action{font-weight:600}
.chart{margin:.4em 0}.chart svg{border:1px solid #d8dce5;background:#fbfcfe}
.chart .bar{fill:#4a78c2}.chart text{font-size:10px;fill:#566}
.note{color:#566;font-size:.9em}
</style>
</head>
<body>
<h1>Access review</h1>
<p class="meta">Generated {{.GeneratedAt}} from policy <code>{{.Policy.Path}}</code>{{if .Policy.Version}} (version {{.Policy.Version}}){{end}}.
Usage: {{if .Sources.Usage}}{{.Sources.Usage}}{{else}}-{{end}}. Audit: {{range $i, $a := .Sources.Audit}}{{if $i}}, {{end}}{{$a}}{{else}}-{{end}}{{if .Sources.AuditFrom}} from {{.Sources.AuditFrom}}{{end}}.
A granted scope unused for {{.UnusedDays}} days is to be withdrawn; a grant in use expiring within {{.RenewDays}} days is to be renewed.</p>

<table id="summary">
<thead><tr><th>Clients</th><th>Lines</th><th>Keep</th><th>Narrow</th><th>Renew</th><th>Revoke</th><th>Uses</th></tr></thead>
<tbody><tr><td class="num" data-sort="{{.Summary.Clients}}">{{.Summary.Clients}}</td><td class="num" data-sort="{{.Summary.Lines}}">{{.Summary.Lines}}</td>
<td class="num">{{.Summary.Keep}}</td><td class="num">{{.Summary.Narrow}}</td><td class="num">{{.Summary.Renew}}</td><td class="num">{{.Summary.Revoke}}</td><td class="num" id="summary-uses">{{.Summary.Uses}}</td></tr></tbody>
</table>
<p class="note">Computed in this page from the embedded data: <span id="js-uses">(script did not run)</span> uses,
<span id="js-lines">?</span> lines, <span id="js-revoke">?</span> to revoke.</p>

<h2>All lines</h2>
<table id="lines" class="sortable">
<thead><tr><th data-type="text">Client</th><th data-type="text">Scope</th><th data-type="text">Status</th><th data-type="text">Grant</th><th data-type="num">Uses</th><th data-type="text">Last used</th><th data-type="num">Idle days</th><th data-type="text">Action</th><th data-type="text">Reason</th></tr></thead>
<tbody>
{{- range $c := .Clients}}{{range $l := $c.Lines}}
<tr><td>{{$c.ClientID}}</td><td><code>{{$l.Scope}}</code></td><td>{{$l.Status}}{{if $l.Sunset}} (sunset {{date $l.Sunset}}){{end}}</td><td>{{grant $l}}</td>
<td class="num" data-sort="{{$l.Count}}">{{$l.Count}}</td><td data-sort="{{$l.LastUsed}}">{{date $l.LastUsed}}</td><td class="num" data-sort="{{$l.IdleDays}}">{{idle $l.IdleDays}}</td>
<td class="action a-{{$l.Action}}">{{$l.Action}}</td><td>{{$l.Reason}}</td></tr>
{{- end}}{{end}}
</tbody>
</table>

{{range $i, $c := .Clients}}
<h2 id="client-{{$i}}">{{$c.ClientID}}</h2>
<p class="meta">{{if $c.Name}}{{$c.Name}}; {{end}}{{if $c.Owner}}owner {{$c.Owner}}; {{end}}{{if not $c.Registered}}<strong>not registered in the policy</strong>; {{end}}{{$c.Uses}} uses.</p>
<div class="chart" data-client="{{$i}}"><span class="note">(usage chart: needs script)</span></div>
{{if $c.Drift}}<p>Drift seen (scopes carried without an active grant):</p><ul>{{range $c.Drift}}<li><code>{{.Scope}}</code>: {{.Count}} request(s), last {{.Last}}</li>{{end}}</ul>{{end}}
{{if $c.Deprecated}}<p>Deprecated scopes still relied on:</p><ul>{{range $c.Deprecated}}<li><code>{{.Scope}}</code>: {{.Count}} request(s), last {{.Last}}{{if .Sunset}}; sunset {{date .Sunset}}{{end}}{{if .Replacement}}; replacement <code>{{.Replacement}}</code>{{end}}</li>{{end}}</ul>{{end}}
{{if $c.Straddles}}<p>Segment straddles (segments held together without approval):</p><ul>{{range $c.Straddles}}<li>{{range $j, $s := .Segments}}{{if $j}} + {{end}}{{$s}}{{end}}: {{.Count}} request(s), last {{.Last}}</li>{{end}}</ul>{{end}}
{{if $c.Revocations}}<p>Revocations in force: {{range $j, $r := $c.Revocations}}{{if $j}}, {{end}}{{$r}}{{end}}</p>{{end}}
{{end}}

<h2>Revocations in force</h2>
{{if .Revocations}}
<table id="revocations" class="sortable">
<thead><tr><th data-type="text">ID</th><th data-type="text">Kind</th><th data-type="text">Target</th><th data-type="text">Scope or segment</th><th data-type="text">Reason</th><th data-type="text">Created</th><th data-type="text">By</th><th data-type="text">Until</th></tr></thead>
<tbody>{{range .Revocations}}<tr><td>{{.ID}}</td><td>{{.Kind}}</td><td>{{.Target}}</td><td>{{.Scope}}{{.Segment}}</td><td>{{.Reason}}</td><td>{{.CreatedAt}}</td><td>{{.CreatedBy}}</td><td>{{.Until}}</td></tr>{{end}}</tbody>
</table>
{{else}}<p>None.</p>{{end}}

<script type="application/json" id="review-data">{{.JSON}}</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("review-data").textContent);
  var uses = 0, lines = 0, revoke = 0;
  data.clients.forEach(function (c) {
    c.lines.forEach(function (l) { uses += l.count; lines++; if (l.action === "revoke") revoke++; });
  });
  document.getElementById("js-uses").textContent = String(uses);
  document.getElementById("js-lines").textContent = String(lines);
  document.getElementById("js-revoke").textContent = String(revoke);

  // Sorting: a click on a header sorts by that column, again reverses.
  function key(td, type) {
    var v = td.hasAttribute("data-sort") ? td.getAttribute("data-sort") : td.textContent;
    if (type === "num") { var n = parseFloat(v); return isNaN(n) ? -Infinity : n; }
    return v.toLowerCase();
  }
  function sortBy(table, col, th) {
    var asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var type = th.getAttribute("data-type");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[col], type), y = key(b.cells[col], type);
      var d = x < y ? -1 : x > y ? 1 : 0;
      return asc ? d : -d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, col) {
      th.addEventListener("click", function () { sortBy(table, col, th); });
    });
  });

  // A usage chart per client: one bar per day of its daily counts.
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  document.querySelectorAll(".chart").forEach(function (div) {
    var c = data.clients[+div.getAttribute("data-client")];
    var days = c.daily, total = 0, max = 0;
    days.forEach(function (d) { total += d.count; if (d.count > max) max = d.count; });
    div.setAttribute("data-total", String(total));
    div.setAttribute("data-days", String(days.length));
    div.textContent = "";
    if (!days.length) { div.appendChild(document.createTextNode("No per-day usage recorded.")); return; }
    var W = 720, H = 140, pad = 28, bw = Math.max(1, (W - 2 * pad) / days.length);
    var svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "uses per day of " + c.client_id});
    days.forEach(function (d, i) {
      var h = max ? (H - 2 * pad) * d.count / max : 0;
      var r = el("rect", {"class": "bar", x: pad + i * bw, y: H - pad - h, width: Math.max(1, bw - 1), height: h, "data-day": d.day, "data-count": d.count});
      var t = el("title", {}); t.textContent = d.day + ": " + d.count;
      r.appendChild(t); svg.appendChild(r);
    });
    var first = el("text", {x: pad, y: H - 8}); first.textContent = days[0].day; svg.appendChild(first);
    var last = el("text", {x: W - pad, y: H - 8, "text-anchor": "end"}); last.textContent = days[days.length - 1].day; svg.appendChild(last);
    var top = el("text", {x: pad, y: pad - 8}); top.textContent = "max " + max + "/day, " + total + " in all"; svg.appendChild(top);
    div.appendChild(svg);
  });

  // #sort=TABLE:COLUMN[:desc] sorts on load, as clicks would: a link to a
  // sorted view.
  var m = /^#sort=([\w-]+):(\d+)(?::(desc))?$/.exec(location.hash);
  if (m) {
    var th = document.querySelectorAll("#" + m[1] + " th")[+m[2]];
    if (th) { th.click(); if (m[3]) th.click(); }
  }
  document.body.setAttribute("data-rendered", "true");
})();
</script>
</body>
</html>
`
