package sops

import (
	"bytes"
	"errors"
	"testing"

	"filippo.io/age"
)

// Plain decrypts an encrypted config and leaves a clear one as it is,
// asking for the keys only when it decrypts.
func TestPlain(t *testing.T) {
	asked := 0
	keys := func() ([]age.Identity, error) { asked++; return identities(t, "key.txt"), nil }

	inClear := read(t, "lab.plain.yaml")
	got, err := Plain(inClear, keys)
	if err != nil || !bytes.Equal(got, inClear) || asked != 0 {
		t.Errorf("Plain(clear file) = %q, %v, keys asked %d times; want it unchanged, keys not asked", got, err, asked)
	}

	enc := read(t, "lab.enc.yaml")
	want, err := Decrypt(enc, identities(t, "key.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err = Plain(enc, keys)
	if err != nil || !bytes.Equal(got, want) || asked != 1 {
		t.Errorf("Plain(encrypted file) = %q, %v, keys asked %d times; want it decrypted as Decrypt does, keys asked once", got, err, asked)
	}

	noKey := errors.New("no age key")
	if _, err := Plain(enc, func() ([]age.Identity, error) { return nil, noKey }); !errors.Is(err, noKey) {
		t.Errorf("Plain without keys = %v, want the keys' error", err)
	}
}
