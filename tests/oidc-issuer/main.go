// Command oidc-issuer is a small OpenID Connect issuer for gantry's keyless tests. It
// mints tokens shaped like GitHub Actions' (the claims Fulcio's github-workflow
// provider reads) and serves them the way a runner does:
//
//	GET /.well-known/openid-configuration, GET /jwks   what Fulcio fetches to verify tokens
//	GET /token?audience=A  (Authorization: bearer T)    ACTIONS_ID_TOKEN_REQUEST_URL's answer
//
// The issuer URL is http://ADDRESS. Requests to /token without the bearer token given
// by --request-token are refused with 401, as GitHub does.
package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func main() {
	addr := flag.String("address", "127.0.0.1:0", "address to listen on")
	requestToken := flag.String("request-token", "", "bearer token /token requires")
	repository := flag.String("repository", "octo-org/octo-repo", "the repository claim")
	workflowRef := flag.String("job-workflow-ref", "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main", "the job_workflow_ref claim")
	flag.Parse()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		log.Fatal(err)
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	issuer := "http://" + listener.Addr().String()
	const kid = "gantry-test"

	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                issuer,
			"jwks_uri":                              issuer + "/jwks",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"claims_supported":                      []string{"sub", "aud", "iss", "job_workflow_ref", "repository"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "bearer "+*requestToken && r.Header.Get("Authorization") != "Bearer "+*requestToken {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		audience := r.URL.Query().Get("audience")
		if audience == "" {
			audience = "https://github.com/" + *repository
		}
		now := time.Now().Unix()
		owner, _, _ := strings.Cut(*repository, "/")
		claims := map[string]any{
			"iss": issuer, "aud": audience, "iat": now, "nbf": now - 5, "exp": now + 300,
			"jti":                   "gantry-test-token",
			"sub":                   "repo:" + *repository + ":ref:refs/heads/main",
			"ref":                   "refs/heads/main",
			"sha":                   "0123456789abcdef0123456789abcdef01234567",
			"repository":            *repository,
			"repository_id":         "123456",
			"repository_owner":      owner,
			"repository_owner_id":   "654321",
			"repository_visibility": "public",
			"run_id":                "42",
			"run_number":            "7",
			"run_attempt":           "1",
			"runner_environment":    "github-hosted",
			"actor":                 "octocat",
			"actor_id":              "1",
			"workflow":              "release",
			"workflow_ref":          *workflowRef,
			"workflow_sha":          "0123456789abcdef0123456789abcdef01234567",
			"job_workflow_ref":      *workflowRef,
			"job_workflow_sha":      "0123456789abcdef0123456789abcdef01234567",
			"event_name":            "push",
			"ref_type":              "branch",
		}
		header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
		payload, _ := json.Marshal(claims)
		signingInput := b64(header) + "." + b64(payload)
		digest := sha256.Sum256([]byte(signingInput))
		signature, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]string{"value": signingInput + "." + b64(signature)})
	})
	log.Printf("issuer %s", issuer)
	log.Fatal(http.Serve(listener, mux))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
