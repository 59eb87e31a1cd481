package decision

import (
	"net/netip"
	"slices"
	"strings"
)

// prefixSet is a set of CIDRs compiled for lookup: IPv4 and IPv6 apart,
// each masked, sorted by first address, with every prefix that another one
// contains removed. The prefixes left are disjoint, so an address is in the
// set exactly when it is in the last prefix starting at or before it: a
// binary search.
type prefixSet struct {
	v4, v6 []netip.Prefix
}

func newPrefixSet(ps []netip.Prefix) prefixSet {
	var s prefixSet
	for _, p := range ps {
		p = normPrefix(p)
		if p.Addr().Is4() {
			s.v4 = append(s.v4, p)
		} else {
			s.v6 = append(s.v6, p)
		}
	}
	s.v4, s.v6 = disjoint(s.v4), disjoint(s.v6)
	return s
}

// normPrefix masks p and turns an IPv4-mapped IPv6 prefix
// (::ffff:10.0.0.0/104) into its IPv4 form (10.0.0.0/8).
func normPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr().WithZone("")
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return netip.PrefixFrom(a, p.Bits()).Masked()
}

func disjoint(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return slices.Clip(out)
}

// contains reports whether a (already normalized by normAddr) is in the set.
func (s *prefixSet) contains(a netip.Addr) bool {
	list := s.v6
	if a.Is4() {
		list = s.v4
	}
	lo, hi := 0, len(list)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if list[m].Addr().Compare(a) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && list[lo-1].Contains(a)
}

// normAddr unmaps IPv4-mapped IPv6 addresses (::ffff:10.0.0.1 is 10.0.0.1)
// and drops zones, so that one client has one address.
func normAddr(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	return a.Unmap().WithZone("")
}

// ipRule is a compiled source_ip constraint.
type ipRule struct {
	allow, deny prefixSet
	hasAllow    bool
	// Prebuilt deny messages.
	detailDenied, detailNotAllowed, detailUnknown string
}

// check returns the failure message, or "" when addr passes. known is false
// when the client address could not be established.
func (r *ipRule) check(addr netip.Addr, known bool) string {
	switch {
	case !known:
		return r.detailUnknown
	case r.deny.contains(addr):
		return r.detailDenied
	case r.hasAllow && !r.allow.contains(addr):
		return r.detailNotAllowed
	}
	return ""
}

// trustedProxies is the compiled trusted_proxies setting.
type trustedProxies struct {
	enabled  bool
	hops     int // 0: no bound
	cidrs    prefixSet
	hasCIDRs bool
}

// clientAddr returns the address of the client: the peer address when no
// proxy is trusted; otherwise X-Forwarded-For is walked from the right, one
// entry per trusted proxy (the peer first), and the first address that is
// not a trusted proxy is the client. The leftmost entries, which the client
// itself may have written, are never taken on trust. When the chain ends at
// a trusted proxy, or an entry is not an address, the client is unknown
// (known=false) and every source_ip rule fails closed. It allocates nothing.
func (tp *trustedProxies) clientAddr(peer netip.Addr, xff string) (addr netip.Addr, known bool, hops int) {
	addr = normAddr(peer)
	if !addr.IsValid() {
		return addr, false, 0
	}
	if !tp.enabled {
		return addr, true, 0
	}
	rest := xff
	for tp.trusts(addr, hops) {
		entry, more, ok := lastListEntry(rest)
		if !ok {
			return netip.Addr{}, false, hops
		}
		a, ok := parseForwardedAddr(entry)
		if !ok {
			return netip.Addr{}, false, hops
		}
		addr, rest = a, more
		hops++
	}
	return addr, true, hops
}

func (tp *trustedProxies) trusts(a netip.Addr, used int) bool {
	if tp.hops > 0 && used >= tp.hops {
		return false
	}
	if tp.hasCIDRs {
		return tp.cidrs.contains(a)
	}
	return tp.hops > 0
}

// lastListEntry splits the last entry off a comma-separated header value.
// ok is false when nothing is left.
func lastListEntry(s string) (entry, rest string, ok bool) {
	if strings.TrimSpace(s) == "" {
		return "", "", false
	}
	i := strings.LastIndexByte(s, ',')
	if i < 0 {
		return strings.TrimSpace(s), "", true
	}
	return strings.TrimSpace(s[i+1:]), s[:i], true
}

// parseForwardedAddr parses one X-Forwarded-For entry: an address, possibly
// with a port ("203.0.113.7:4711", "[2001:db8::1]:443") or in brackets.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return normAddr(a), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normAddr(ap.Addr()), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return normAddr(a), true
		}
	}
	return netip.Addr{}, false
}

// parseCIDROrAddr parses a CIDR or a single address (a /32 or /128).
func parseCIDROrAddr(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		return p, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// looksLikeAddress reports whether s was meant as an address or CIDR rather
// than a network name (it is made of hex digits, dots, colons and slashes
// and has a dot or colon).
func looksLikeAddress(s string) bool {
	if !strings.ContainsAny(s, ".:") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':' || c == '/' || c == '%' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}
