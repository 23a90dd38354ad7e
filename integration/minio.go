package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/dbha/dbha/backup"
)

// ObjectStore is a MinIO server on loopback, the S3-compatible service
// backups are stored into in tests, with one bucket.
type ObjectStore struct {
	Endpoint  string // 127.0.0.1:port
	AccessKey string
	SecretKey string
	Bucket    string
	Dir       string // its data
	*service
}

// StartObjectStore starts MinIO with its data under dir and creates the
// bucket. The root account's password is random and reaches the server in
// its environment, never its arguments.
func StartObjectStore(ctx context.Context, dir, bucket string) (*ObjectStore, error) {
	bin, err := lookBinary("minio")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	rand.Read(secret)
	s := &ObjectStore{Endpoint: net.JoinHostPort(labHost, strconv.Itoa(ports[0])), AccessKey: "dbha-test",
		SecretKey: hex.EncodeToString(secret), Bucket: bucket, Dir: filepath.Join(dir, "data")}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "server", "--quiet", "--address", s.Endpoint,
		"--console-address", net.JoinHostPort(labHost, strconv.Itoa(ports[1])), s.Dir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+dir)
	if s.service, err = startService(ctx, "minio", cmd, filepath.Join(dir, "minio.log"), "http://"+s.Endpoint+"/minio/health/ready"); err != nil {
		return nil, err
	}
	c, err := s.Client()
	if err != nil {
		s.Stop()
		return nil, err
	}
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		s.Stop()
		return nil, fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return s, nil
}

// Client is a MinIO client for the server's root account.
func (s *ObjectStore) Client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
}

// S3 is how dbha reaches the bucket, its keys under prefix.
func (s *ObjectStore) S3(prefix string) backup.S3 {
	return backup.S3{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix, AccessKey: s.AccessKey, SecretKey: s.SecretKey, Insecure: true}
}
