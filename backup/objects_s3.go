package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 says how to reach an S3-compatible bucket.
type S3 struct {
	Endpoint  string // host:port
	Region    string
	Bucket    string
	Prefix    string // keys start with it (no leading or trailing "/")
	AccessKey string
	SecretKey string
	// Insecure speaks plain HTTP (a bucket on a private network or
	// loopback); TLS otherwise.
	Insecure bool
}

// s3PartSize is the size of each part of a multipart upload: a part is
// held in memory while it is sent, and 10,000 parts of it bound an object
// at 160 GiB.
const s3PartSize = 16 << 20

// s3Objects keeps objects in a bucket, through the MinIO client (any
// S3-compatible service).
type s3Objects struct {
	c      *minio.Client
	bucket string
	prefix string
	where  string
}

// NewS3Objects connects to the bucket (which must exist: dbha does not
// create buckets, whose policy is the operator's).
func NewS3Objects(ctx context.Context, s S3) (Objects, error) {
	c, err := minio.New(s.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: !s.Insecure,
		Region: s.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", s.Endpoint, err)
	}
	o := s3Objects{c: c, bucket: s.Bucket, prefix: strings.Trim(s.Prefix, "/"), where: "s3://" + s.Bucket + "/" + strings.Trim(s.Prefix, "/")}
	ok, err := c.BucketExists(ctx, s.Bucket)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s at %s: %w", o.where, s.Endpoint, err)
	case !ok:
		return nil, fmt.Errorf("%s at %s: the bucket does not exist (create it, with the policy backups need)", o.where, s.Endpoint)
	}
	return o, nil
}

func (o s3Objects) String() string { return o.where }

func (o s3Objects) key(k string) string {
	if o.prefix == "" {
		return k
	}
	return o.prefix + "/" + k
}

func (o s3Objects) Create(ctx context.Context, key string) (ObjectWriter, error) {
	return o.put(ctx, key, minio.PutObjectOptions{})
}

func (o s3Objects) put(ctx context.Context, key string, opts minio.PutObjectOptions) (ObjectWriter, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	pr, pw := io.Pipe()
	w := &s3Writer{pw: pw, cancel: cancel, done: make(chan error, 1)}
	opts.PartSize = s3PartSize
	opts.ContentType = "application/octet-stream"
	go func() {
		_, err := o.c.PutObject(ctx, o.bucket, o.key(key), pr, -1, opts)
		pr.CloseWithError(err) // a writer blocked on a failed upload returns
		w.done <- err
	}()
	return w, nil
}

// s3Writer feeds a multipart upload through a pipe: the object exists
// once the upload completes, and an aborted one (the context cancelled
// first) leaves no object.
type s3Writer struct {
	pw     *io.PipeWriter
	cancel context.CancelCauseFunc
	done   chan error
}

func (w *s3Writer) Write(p []byte) (int, error) { return w.pw.Write(p) }

func (w *s3Writer) Close() error {
	w.pw.Close()
	err := <-w.done
	w.cancel(nil)
	return err
}

func (w *s3Writer) Abort() {
	w.cancel(errors.New("aborted"))
	w.pw.CloseWithError(errors.New("aborted"))
	<-w.done
}

func (o s3Objects) Open(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := o.c.GetObject(ctx, o.bucket, o.key(key), minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat() // GetObject is lazy: a missing key shows here
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		return nil, o.notExist(key, err)
	}
	return obj, nil
}

func (o s3Objects) notExist(key string, err error) error {
	if r := minio.ToErrorResponse(err); r.Code == "NoSuchKey" || r.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%s/%s: %w", o.where, key, fs.ErrNotExist)
	}
	return fmt.Errorf("%s/%s: %w", o.where, key, err)
}

func (o s3Objects) Exists(ctx context.Context, key string) (bool, error) {
	_, err := o.c.StatObject(ctx, o.bucket, o.key(key), minio.StatObjectOptions{})
	if err == nil {
		return true, nil
	}
	if err = o.notExist(key, err); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

func (o s3Objects) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	for info := range o.c.ListObjects(ctx, o.bucket, minio.ListObjectsOptions{Prefix: o.key(prefix), Recursive: true}) {
		if info.Err != nil {
			return nil, info.Err
		}
		k := info.Key
		if o.prefix != "" {
			k = strings.TrimPrefix(k, o.prefix+"/")
		}
		out = append(out, k)
	}
	return out, nil // ListObjects gives keys in lexical order
}

func (o s3Objects) Remove(ctx context.Context, prefix string) error {
	keys := make(chan minio.ObjectInfo)
	go func() {
		defer close(keys)
		for info := range o.c.ListObjects(ctx, o.bucket, minio.ListObjectsOptions{Prefix: o.key(prefix), Recursive: true}) {
			if info.Err == nil {
				keys <- info
			}
		}
	}()
	var errs []error
	for r := range o.c.RemoveObjects(ctx, o.bucket, keys, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("remove %s: %w", r.ObjectName, r.Err))
	}
	return errors.Join(errs...)
}

// claimName marks a backup's place in a bucket, which has no directories.
const claimName = ".claim"

// Claim writes the place's marker only if it is not there (a conditional
// write, If-None-Match: *), so that two runs never share a place.
func (o s3Objects) Claim(ctx context.Context, prefix string) error {
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	w, err := o.put(ctx, prefix+claimName, opts)
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		if r := minio.ToErrorResponse(err); r.StatusCode == http.StatusPreconditionFailed {
			return ErrIDTaken
		}
		return fmt.Errorf("claim %s/%s: %w", o.where, prefix, err)
	}
	return nil
}
