package gateway

import "strings"

// normalizeHost turns a request's Host (from the Host header, an
// absolute-form request URI or HTTP/2 :authority, as net/http put it in
// r.Host) into the name routing uses: lower case, without port, without
// trailing dots, and without the brackets of an IPv6 literal. It returns ""
// for a host it cannot make sense of, which matches no route.
//
// It allocates only when the host has upper-case letters.
func normalizeHost(h string) string {
	if h == "" {
		return ""
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return ""
		}
		rest := h[end+1:]
		if rest != "" && (rest[0] != ':' || !allDigits(rest[1:])) {
			return ""
		}
		h = h[1:end]
		if h == "" || strings.IndexByte(h, ':') < 0 || strings.IndexByte(h, '[') >= 0 {
			return "" // brackets hold only IPv6 literals
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		if strings.IndexByte(h[i+1:], ':') >= 0 {
			// Several colons without brackets: an IPv6 literal without port.
		} else {
			if !allDigits(h[i+1:]) {
				return ""
			}
			h = h[:i]
		}
	}
	h = strings.TrimRight(h, ".")
	if strings.ContainsAny(h, "[]") {
		return "" // a stray bracket: no host name or address has one
	}
	return lowerASCII(h)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases ASCII letters, allocating only when there are any.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}

// sameName reports whether a TLS server name (SNI) names host, a normalized
// host. Server names compare without case and without a trailing dot.
func sameName(sni, host string) bool {
	sni = strings.TrimRight(sni, ".")
	return len(sni) == len(host) && strings.EqualFold(sni, host)
}

// matchHost reports whether the normalized host matches pattern, a service
// host as config gives it: an exact name, or "*.parent" matching exactly one
// label below parent.
func matchHost(pattern, host string) bool {
	if parent, ok := strings.CutPrefix(pattern, "*."); ok {
		label, rest, found := strings.Cut(host, ".")
		return found && label != "" && rest == parent
	}
	return pattern == host && host != ""
}

// wildcardKey is the key under which a table finds the "*.parent" routes
// that may match host: its parent, or "" when host has a single label.
func wildcardKey(host string) string {
	i := strings.IndexByte(host, '.')
	if i <= 0 {
		return ""
	}
	return host[i+1:]
}

// matchPath reports whether path is under prefix on a segment boundary.
// prefix is a service path with its trailing slash removed ("" for "/").
func matchPath(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/' || prefix == ""
}

// cleanPrefix removes the trailing slash of a service path.
func cleanPrefix(p string) string {
	return strings.TrimRight(p, "/")
}

// hasDotDot reports whether a request path has a ".." segment, which a
// backend could resolve to outside the prefix the request was routed by.
// So do segments that some backends read as "..": with path parameters
// ("..;x", Tomcat and Jetty drop what follows the ';') and with a
// backslash as separator ("..\", Windows servers).
func hasDotDot(p string) bool {
	for p != "" {
		i := strings.IndexAny(p, "/\\")
		seg, rest := p, ""
		if i >= 0 {
			seg, rest = p[:i], p[i+1:]
		}
		if seg == ".." || strings.HasPrefix(seg, "..;") {
			return true
		}
		p = rest
	}
	return false
}
