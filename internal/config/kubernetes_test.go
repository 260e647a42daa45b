package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestKubernetesSection(t *testing.T) {
	yaml := "version: 1\ndomain: example.org\nkubernetes:\n  namespace: lab\n  ingress_class: {public: nginx-public}\n" +
		"  tcp_services: {public: ingress-nginx/tcp}\n  secret_store: {name: vault, kind: SecretStore}\n" +
		"services:\n- name: longhorn\n  host: longhorn\n  backend: http://longhorn-frontend:80\n" +
		"  kubernetes: {service: longhorn-frontend, tls_secret: longhorn-tls-certificate}\n"
	cfg, err := Parse("lab.yaml", []byte(yaml), Options{Getenv: env()})
	if err != nil {
		t.Fatal(err)
	}
	want := defaultKubernetes
	want.Namespace = "lab"
	want.IngressClass.Public = "nginx-public"
	want.TCPServices.Public = "ingress-nginx/tcp"
	want.SecretStore = SecretStore{Name: "vault", Kind: "SecretStore"}
	if diff := cmp.Diff(want, cfg.Kubernetes); diff != "" {
		t.Errorf("kubernetes (-want +got):\n%s", diff)
	}
	if got, want := cfg.Services[0].Kubernetes, (ServiceKubernetes{Service: "longhorn-frontend", TLSSecret: "longhorn-tls-certificate"}); got != want {
		t.Errorf("services[0].kubernetes = %+v, want %+v", got, want)
	}
	if cfg.Kubernetes.IngressClass.For(Public) != "nginx-public" || cfg.Kubernetes.IngressClass.For(Private) != "private" {
		t.Errorf("ClassNames.For = %q, %q", cfg.Kubernetes.IngressClass.For(Public), cfg.Kubernetes.IngressClass.For(Private))
	}
}

func TestKubernetesErrors(t *testing.T) {
	yaml := "version: 1\ndomain: example.org\nkubernetes:\n  namespace: Lab\n  cluster_issuer: 'lets encrypt'\n" +
		"  tcp_services: {public: tcp-services}\n  blackbox_exporter: blackbox\n  external_dns_annotations: new\n" +
		"services:\n- name: a\n  host: a\n  echo: true\n  kubernetes: {service: A_B, tls_secret: -x}\n"
	_, err := Parse("lab.yaml", []byte(yaml), Options{Getenv: env()})
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse: %v, want Errors", err)
	}
	want := []string{
		`lab.yaml:4:14: kubernetes.namespace: "Lab" is not a namespace name (lower case letters, digits and dashes, at most 63)`,
		`lab.yaml:5:19: kubernetes.cluster_issuer: "lets encrypt" is not a Kubernetes object name (lower case letters, digits, dashes and dots)`,
		`lab.yaml:6:26: kubernetes.tcp_services.public: "tcp-services" is not namespace/name, as the controller's flag takes it`,
		`lab.yaml:7:22: kubernetes.blackbox_exporter: "blackbox" is not host:port (for IPv6 write [::1]:443)`,
		`lab.yaml:8:29: kubernetes.external_dns_annotations: "new" is not one of both, alpha, current`,
		`lab.yaml:13:25: services[0].kubernetes.service: "A_B" is not a Service name (lower case letters, digits and dashes, at most 63)`,
		`lab.yaml:13:42: services[0].kubernetes.tls_secret: "-x" is not a Secret name (lower case letters, digits, dashes and dots)`,
	}
	if diff := cmp.Diff(want, strings.Split(errs.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// UnreadSecrets: secrets are taken as set without their variables or files,
// and nothing else changes.
func TestUnreadSecrets(t *testing.T) {
	yaml := "version: 1\ndomain: ${DOMAIN}\ndns:\n  provider: {type: cloudflare, api_token: '${CF_API_TOKEN}'}\n" +
		"alerts:\n  phone: {matrix: {homeserver: 'https://m.example.org', room: '!a:example.org', access_token_file: /nonexistent/token}}\n"
	if _, err := Parse("lab.yaml", []byte(yaml), Options{Getenv: env("DOMAIN", "example.org")}); err == nil {
		t.Fatal("Parse without UnreadSecrets accepted an unset variable and a missing file")
	}
	cfg, err := Parse("lab.yaml", []byte(yaml), Options{Getenv: env("DOMAIN", "example.org"), UnreadSecrets: true})
	if err != nil {
		t.Fatalf("Parse with UnreadSecrets: %v", err)
	}
	if cfg.Domain != "example.org" || !cfg.DNS.Provider.APIToken.IsSet() || !cfg.Alerts[0].Matrix.AccessToken.IsSet() {
		t.Errorf("domain %q, api_token set %v, access_token set %v", cfg.Domain, cfg.DNS.Provider.APIToken.IsSet(), cfg.Alerts[0].Matrix.AccessToken.IsSet())
	}
	if _, err := Parse("lab.yaml", []byte(yaml), Options{Getenv: env(), UnreadSecrets: true}); err == nil || !strings.Contains(err.Error(), "DOMAIN") {
		t.Errorf("an unset variable outside a secret: %v, want an error naming DOMAIN", err)
	}
}
