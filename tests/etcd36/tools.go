//go:build tools

// Package etcd36 pins etcd 3.6.16's server, etcdctl and etcdutl: build.sh builds
// them from the module proxy as the reference hub's tests compare against.
package etcd36

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
