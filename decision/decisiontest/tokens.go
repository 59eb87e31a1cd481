package decisiontest

import "github.com/scopegate/scopegate/decision/tokenmint"

// The minting API of decision/tokenmint under the names tests use, so a
// test mints exactly as the shipped tools do. See tokenmint for each.
type (
	Signer = tokenmint.Signer
	Claims = tokenmint.Claims
	Prover = tokenmint.Prover
)

// Key kinds (tokenmint.KindRSA, ...).
const (
	KindRSA     = tokenmint.KindRSA
	KindEC      = tokenmint.KindEC
	KindEd25519 = tokenmint.KindEd25519
)

// Signers, claims, ids and key sets, and the bundled example keys.
var (
	NewSigner        = tokenmint.NewSigner
	NewRSASigner     = tokenmint.NewRSASigner
	NewECSigner      = tokenmint.NewECSigner
	NewEd25519Signer = tokenmint.NewEd25519Signer
	NewSignerOfKind  = tokenmint.NewSignerOfKind
	LoadSignerPEM    = tokenmint.LoadSignerPEM
	StandardClaims   = tokenmint.StandardClaims
	MintUnsigned     = tokenmint.MintUnsigned
	RandomID         = tokenmint.RandomID
	JWKS             = tokenmint.JWKS
	ExampleSigner    = tokenmint.ExampleSigner
	ExamplePath      = tokenmint.ExamplePath
	FindModuleRoot   = tokenmint.FindModuleRoot
	NewProver        = tokenmint.NewProver
	ProverOf         = tokenmint.ProverOf
	ATH              = tokenmint.ATH
)
