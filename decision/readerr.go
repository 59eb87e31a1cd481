package decision

import (
	"encoding/pem"
	"errors"
	"io/fs"
)

// ReadProblem is the problem of a policy file that cannot be read: what
// went wrong and the fix, naming the path once (Problem.File) instead of
// again inside the operating system's "open PATH: ..." text.
func ReadProblem(path string, err error) Problem {
	return Problem{File: path, Message: "cannot read the policy file: " + ReadCause(err)}
}

// ReadCause says why a file could not be read, without repeating its
// path: "no such file; check the path", "permission denied", "it is a
// directory; name the file itself".
func ReadCause(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file; check the path"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied; make the file readable by this user"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if pe.Err.Error() == "is a directory" {
			return "it is a directory; name the file itself"
		}
		return pe.Err.Error()
	}
	return err.Error()
}

// PEMBlockType is the type of the PEM block data starts with (e.g.
// "PRIVATE KEY"), or "" when data is not PEM.
func PEMBlockType(data []byte) string {
	if block, _ := pem.Decode(data); block != nil {
		return block.Type
	}
	return ""
}

// NotPolicyText says why data is not a policy (or another YAML file) when
// it is plainly something else, e.g. a PEM private key, naming only the
// PEM block's type: a parser's message would quote the file's first bytes.
// It returns "" for anything else.
func NotPolicyText(data []byte) string { return pemMessage(data) }
