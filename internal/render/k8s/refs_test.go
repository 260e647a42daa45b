package k8s

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestReferences: what one rendered object names, another rendered object
// (or a Service of the cluster the file names) provides. Per-object
// validation cannot see a route to a Service that is not there.
func TestReferences(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	files = append(files, filepath.Join("..", "..", "..", "examples", "gitops", "lab.yaml"))
	for _, f := range files {
		cfg := load(t, f)
		external := map[string]bool{} // Services of the cluster named by kubernetes.service
		for _, s := range cfg.Services {
			if s.Kubernetes.Service != "" {
				external[s.Kubernetes.Service] = true
			}
		}
		for _, out := range []Output{Ingress, GatewayAPI} {
			t.Run(filepath.Base(f)+"/"+string(out), func(t *testing.T) {
				objs := decodeAll(t, render(t, cfg, Options{Output: out}))
				services := map[string]map[string]any{}  // namespace/name -> Service
				gateways := map[string]map[string]bool{} // Gateway -> listener names
				for _, o := range objs {
					md := o["metadata"].(map[string]any)
					key := fmt.Sprint(md["namespace"], "/", md["name"])
					switch o["kind"] {
					case "Service":
						services[key] = o
					case "Gateway":
						gateways[fmt.Sprint(md["name"])] = map[string]bool{}
						for _, l := range get(o, "spec", "listeners").([]any) {
							gateways[fmt.Sprint(md["name"])][fmt.Sprint(l.(map[string]any)["name"])] = true
						}
					}
				}
				ns := cfg.Kubernetes.Namespace
				// hasPort reports whether the Service name in ns serves port.
				hasPort := func(ns, name string, port any) bool {
					if ns == "" {
						ns = "<nil>"
					}
					svc, ok := services[ns+"/"+name]
					if !ok {
						return ns == cfg.Kubernetes.Namespace && external[name] || ns == "<nil>" && external[name]
					}
					for _, p := range get(svc, "spec", "ports").([]any) {
						if fmt.Sprint(p.(map[string]any)["port"]) == fmt.Sprint(port) {
							return true
						}
					}
					return false
				}
				for _, o := range objs {
					md := o["metadata"].(map[string]any)
					where := fmt.Sprintf("%s %s", o["kind"], md["name"])
					switch o["kind"] {
					case "EndpointSlice":
						labels := md["labels"].(map[string]any)
						svc := fmt.Sprint(labels["kubernetes.io/service-name"])
						if !hasPort(ns, svc, get(o, "ports").([]any)[0].(map[string]any)["port"]) && services[nsKey(ns)+svc] == nil {
							t.Errorf("%s belongs to Service %s, which is not rendered", where, svc)
						}
						if !portNamesMatch(services[nsKey(ns)+svc], get(o, "ports").([]any)) {
							t.Errorf("%s: its port names do not match Service %s's", where, svc)
						}
					case "Ingress":
						for _, r := range get(o, "spec", "rules").([]any) {
							for _, p := range get(r.(map[string]any), "http", "paths").([]any) {
								b := get(p.(map[string]any), "backend", "service").(map[string]any)
								if !hasPort(ns, fmt.Sprint(b["name"]), get(b, "port", "number")) {
									t.Errorf("%s routes to %s:%v, which no Service serves", where, b["name"], get(b, "port", "number"))
								}
							}
						}
					case "ConfigMap":
						for port, v := range md0(o, "data") {
							ref := strings.Split(fmt.Sprint(v), ":")
							svcNS, name, _ := strings.Cut(ref[0], "/")
							if !hasPort(svcNS, name, ref[1]) {
								t.Errorf("%s: port %s goes to %s, which no Service serves", where, port, v)
							}
						}
					case "HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute":
						for _, p := range get(o, "spec", "parentRefs").([]any) {
							pr := p.(map[string]any)
							if !gateways[fmt.Sprint(pr["name"])][fmt.Sprint(pr["sectionName"])] {
								t.Errorf("%s attaches to %s/%s, which is not a rendered listener", where, pr["name"], pr["sectionName"])
							}
						}
						for _, r := range get(o, "spec", "rules").([]any) {
							refs, _ := r.(map[string]any)["backendRefs"].([]any)
							for _, b := range refs {
								br := b.(map[string]any)
								if !hasPort(ns, fmt.Sprint(br["name"]), br["port"]) {
									t.Errorf("%s sends to %s:%v, which no Service serves", where, br["name"], br["port"])
								}
							}
						}
					case "ServiceMonitor":
						sel := get(o, "spec", "selector", "matchLabels").(map[string]any)
						matched := 0
						for _, svc := range services {
							if matches(sel, get(svc, "metadata", "labels")) {
								matched++
								if !portNamed(svc, fmt.Sprint(get(o, "spec", "endpoints").([]any)[0].(map[string]any)["port"])) {
									t.Errorf("%s scrapes a port name Service %s does not have", where, get(svc, "metadata", "name"))
								}
							}
						}
						if matched != 1 {
							t.Errorf("%s selects %d Services, want 1", where, matched)
						}
					}
				}
			})
		}
	}
}

func nsKey(ns string) string {
	if ns == "" {
		return "<nil>/"
	}
	return ns + "/"
}

func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func md0(o map[string]any, key string) map[string]any {
	m, _ := o[key].(map[string]any)
	return m
}

func matches(sel map[string]any, labels any) bool {
	l, _ := labels.(map[string]any)
	for k, v := range sel {
		if l[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func portNamed(svc map[string]any, name string) bool {
	for _, p := range get(svc, "spec", "ports").([]any) {
		if p.(map[string]any)["name"] == name {
			return true
		}
	}
	return false
}

func portNamesMatch(svc map[string]any, ports []any) bool {
	if svc == nil {
		return false
	}
	for _, p := range ports {
		if !portNamed(svc, fmt.Sprint(p.(map[string]any)["name"])) {
			return false
		}
	}
	return true
}
