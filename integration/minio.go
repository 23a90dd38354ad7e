package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

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
	cmd       *exec.Cmd
	exited    chan struct{}
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
		SecretKey: hex.EncodeToString(secret), Bucket: bucket, Dir: filepath.Join(dir, "data"), exited: make(chan struct{})}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "minio.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	s.cmd = exec.Command(bin, "server", "--quiet", "--address", s.Endpoint,
		"--console-address", net.JoinHostPort(labHost, strconv.Itoa(ports[1])), s.Dir)
	s.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "HOME="+dir)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start minio: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		b, _ := os.ReadFile(filepath.Join(dir, "minio.log"))
		return nil, fmt.Errorf("%w: %s", err, b)
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

// waitReady polls MinIO's readiness endpoint, for at most 30 seconds.
func (s *ObjectStore) waitReady(ctx context.Context) error {
	url := "http://" + s.Endpoint + "/minio/health/ready"
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		select {
		case <-s.exited:
			return fmt.Errorf("minio exited while starting")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("minio on %s not ready within 30s", s.Endpoint)
}

// Client is a MinIO client for the server's root account.
func (s *ObjectStore) Client() (*minio.Client, error) {
	return minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
}

// S3 is how dbha reaches the bucket, its keys under prefix.
func (s *ObjectStore) S3(prefix string) backup.S3 {
	return backup.S3{Endpoint: s.Endpoint, Bucket: s.Bucket, Prefix: prefix, AccessKey: s.AccessKey, SecretKey: s.SecretKey, Insecure: true}
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 seconds).
func (s *ObjectStore) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}
