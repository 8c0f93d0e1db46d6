//go:build tools

// Package tools pins the Go tools kubetrain's tests run (built by hack/tools.sh into .cache/tools).
// A module of its own so `go build` resolves through go.mod/go.sum instead of `go install pkg@v`,
// whose module-path probing breaks on proxies that answer 403 for the candidate sub-paths.
package tools

import (
	_ "github.com/aws/amazon-ec2-metadata-mock/cmd"
)
