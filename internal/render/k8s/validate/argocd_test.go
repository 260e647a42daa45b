package validate

import (
	"os"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestArgoCDSidecarPatch: deploy/argocd/repo-server-patch.yaml is a
// Deployment in the official type's own field names, and its sidecar runs
// argocd-cmp-server as user 999 with the volumes Argo CD's repo server has.
func TestArgoCDSidecarPatch(t *testing.T) {
	data, err := os.ReadFile("../../../../deploy/argocd/repo-server-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(data, &d); err != nil {
		t.Fatalf("strict decoding into apps/v1 Deployment: %v", err)
	}
	if d.Name != "argocd-repo-server" || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one sidecar for argocd-repo-server, got %s with %d containers", d.Name, len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Command, []string{"/var/run/argocd/argocd-cmp-server"}) {
		t.Errorf("command %v, want argocd-cmp-server", c.Command)
	}
	if sc := c.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 999 {
		t.Errorf("the sidecar must run as user 999")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	// var-files and plugins are volumes of Argo CD's own repo-server Deployment.
	if mounts["/var/run/argocd"] != "var-files" || mounts["/home/argocd/cmp-server/plugins"] != "plugins" || mounts["/tmp"] == "" {
		t.Errorf("volume mounts %v", mounts)
	}
}

// TestGitOpsApplication: examples/gitops/application.yaml is an Application
// that Argo CD's CRD accepts, and it asks for the labgate plugin.
func TestGitOpsApplication(t *testing.T) {
	data, err := os.ReadFile("../../../../examples/gitops/application.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := crdSchemaValidate(t, "argoproj.io/v1alpha1", "Application", data); err != nil {
		t.Fatal(err)
	}
	var app struct {
		Spec struct {
			Source struct {
				Plugin struct {
					Name string `json:"name"`
				} `json:"plugin"`
			} `json:"source"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &app); err != nil {
		t.Fatal(err)
	}
	if app.Spec.Source.Plugin.Name != "labgate" {
		t.Errorf("spec.source.plugin.name = %q, want labgate (deploy/argocd/plugin.yaml)", app.Spec.Source.Plugin.Name)
	}
}
