module gantry.dev/tests/oidc-issuer

go 1.25.0
