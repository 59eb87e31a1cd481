// Package settings layers the serve command's settings: every flag can
// also be set by an environment variable (SCOPEGATE_ and the flag name)
// or by a key of a YAML configuration file, with the precedence
//
//	flags > environment > configuration file > defaults
//
// It works on a flag.FlagSet and knows nothing of the server: the command
// turns the layered flags into a server.Config, which the server validates.
// Errors name the flag's variable or the file's key and line, so that a
// user can find the setting to fix wherever it was written.
package settings
