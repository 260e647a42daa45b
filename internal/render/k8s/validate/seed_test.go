package validate

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// TestSeedIngressTyped: the seed blog post's hand-written Ingress objects and
// the ones rendered from the equivalent labgate files are the same
// networking.k8s.io/v1 Ingress values.
func TestSeedIngressTyped(t *testing.T) {
	for _, class := range []string{"private", "public"} {
		var seed, got networkingv1.Ingress
		for _, f := range []struct {
			path string
			into *networkingv1.Ingress
		}{
			{"../testdata/seed/longhorn-" + class + ".yaml", &seed},
			{"../testdata/golden/longhorn-" + class + ".lab.ingress.yaml", &got},
		} {
			data, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			// The rendered file also holds a DNSEndpoint: take the Ingress.
			var doc []byte
			for _, d := range documents(data) {
				if bytes.Contains(d, []byte("\nkind: Ingress\n")) {
					doc = d
				}
			}
			if err := yaml.UnmarshalStrict(doc, f.into); err != nil {
				t.Fatalf("%s: %v", f.path, err)
			}
		}
		if seed.Name == "" || !reflect.DeepEqual(seed, got) {
			t.Errorf("%s: rendered Ingress differs from the seed's:\nseed: %+v\ngot:  %+v", class, seed, got)
		}
	}
}
