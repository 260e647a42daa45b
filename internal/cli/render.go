package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/render/k8s"
)

// renderCmd prints the lab as Kubernetes manifests on stdout. Secrets in the
// file are not read (the renderer never writes one), so it runs where they
// are absent, such as an Argo CD Config Management Plugin.
func renderCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelp(args[0]) {
		args = append([]string{"k8s"}, args...) // the flags of the only target
	}
	if len(args) == 0 || args[0] != "k8s" {
		return usageError{"the only target is k8s: labgate render k8s -c FILE"}
	}
	fs := newFlags("render k8s", stderr)
	path := fs.String("c", "", "config `file` to render")
	output := fs.String("output", string(k8s.Ingress), "`kind` of routing objects: ingress (Ingress + ingress-nginx tcp/udp-services) or gateway-api (Gateway, HTTPRoute, TLSRoute, TCPRoute, UDPRoute)")
	namespace := fs.String("namespace", "", "`namespace` of the rendered objects (default: kubernetes.namespace of the file)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"-c FILE is required"}
	}
	if *output != string(k8s.Ingress) && *output != string(k8s.GatewayAPI) {
		return usageError{fmt.Sprintf("-output %q: want ingress or gateway-api", *output)}
	}
	cfg, err := loadUnreadSecrets(*path)
	if err == nil {
		var out []byte
		out, err = k8s.Render(cfg, k8s.Options{Output: k8s.Output(*output), Namespace: *namespace})
		if err == nil {
			_, err = stdout.Write(out)
			return err
		}
	}
	var errs config.Errors
	if errors.As(err, &errs) {
		fmt.Fprintln(stderr, errs.Error())
		fmt.Fprintf(stderr, "%s: %d problem(s), nothing rendered\n", *path, len(errs))
		return silentError{}
	}
	return err
}
