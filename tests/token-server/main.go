// token-server is a registry token service, as ghcr.io, Docker Hub and Harbor run
// one: docker-registry (auth: token) sends clients here with a Bearer challenge, and
// this server hands out ES256 JWTs granting what the client asked for, to one user
// and password given on the command line.
//
// It makes a key and a self-signed certificate at start-up and writes the
// certificate to -cert, for the registry's rootcertbundle. It prints "listening on
// HOST:PORT" first. GET /__log lists the token requests it saw (scopes, user).
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type seen struct {
	User   string   `json:"user"`
	Scopes []string `json:"scopes"`
	Status int      `json:"status"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	certPath := flag.String("cert", "", "where to write the signing certificate (PEM)")
	issuer := flag.String("issuer", "gantry-test-issuer", "the iss claim")
	user := flag.String("user", "", "the one user allowed")
	password := flag.String("password", "", "its password")
	pullOnly := flag.String("pull-only", "", "comma-separated repositories on which only pull is granted")
	flag.Parse()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "gantry-test-token-signer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		log.Fatal(err)
	}

	var mu sync.Mutex
	var requests []seen
	mux := http.NewServeMux()
	mux.HandleFunc("/__log", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(requests)
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		scopes := r.URL.Query()["scope"]
		status := http.StatusOK
		if !ok || u != *user || p != *password {
			status = http.StatusUnauthorized
		}
		mu.Lock()
		requests = append(requests, seen{u, scopes, status})
		mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, `{"details":"wrong user or password"}`, status)
			return
		}
		var granted []access
		for _, scope := range scopes {
			parts := strings.Split(scope, ":")
			if len(parts) != 3 {
				continue
			}
			actions := strings.Split(parts[2], ",")
			for _, repo := range strings.Split(*pullOnly, ",") {
				if repo != "" && repo == parts[1] {
					actions = []string{"pull"}
				}
			}
			granted = append(granted, access{parts[0], parts[1], actions})
		}
		now := time.Now()
		header, _ := json.Marshal(map[string]any{"alg": "ES256", "typ": "JWT", "x5c": []string{base64.StdEncoding.EncodeToString(der)}})
		claims, _ := json.Marshal(map[string]any{
			"iss": *issuer, "sub": u, "aud": r.URL.Query().Get("service"),
			"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
			"jti": fmt.Sprint(now.UnixNano()), "access": granted,
		})
		signing := b64(header) + "." + b64(claims)
		digest := sha256.Sum256([]byte(signing))
		rr, ss, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		sig := make([]byte, 64)
		rr.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token": signing + "." + b64(sig), "expires_in": 300})
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}
