package validate

import (
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
			if err := yaml.UnmarshalStrict(data, f.into); err != nil {
				t.Fatalf("%s: %v", f.path, err)
			}
		}
		if seed.Name == "" || !reflect.DeepEqual(seed, got) {
			t.Errorf("%s: rendered Ingress differs from the seed's:\nseed: %+v\ngot:  %+v", class, seed, got)
		}
	}
}
