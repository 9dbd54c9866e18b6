// fault-proxy stands in front of a registry and plays a real network: it adds
// latency (a fixed delay per chunk in each direction, so throughput is kept), injects
// faults chosen per request by method and path, and logs every request so that tests
// count what a client did from the outside.
//
// It binds the address given (port 0 picks a free one) and prints "listening on
// HOST:PORT" as its first line. Control endpoints, on the same port:
//
//	POST   /__proxy/faults  [{"method":"PUT","path":"regexp","action":"status","status":503,
//	                          "times":1,"retry_after":"1"}, ...]   adds faults
//	DELETE /__proxy/faults                                       removes them all
//	GET    /__proxy/log     the requests seen: [{"method","path","status","fault",
//	                        "bytes_in","chunked"}]
//	DELETE /__proxy/log     forgets them
//
// Actions: status (answer with that status and never reach the registry; with
// "forward": true the registry handles the request first), reset (close the
// connection with RST before answering), stall (say nothing, read nothing), garbage
// (the registry's answer with its body replaced by junk), truncate (half the body,
// then close), throttle (hand the request body on to the registry at "rate" bytes a
// second, as a slow uplink would; without -latency the client is held back too, once
// the sockets' buffers are full, while with it the proxy takes the client's bytes as
// they come and delays them in memory).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
)

type fault struct {
	Method     string `json:"method"`
	Path       string `json:"path"`
	Action     string `json:"action"`
	Status     int    `json:"status"`
	Times      int    `json:"times"`
	RetryAfter string `json:"retry_after"`
	Forward    bool   `json:"forward"`
	Rate       int64  `json:"rate"`
	re         *regexp.Regexp
}

type entry struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query"`
	Status int    `json:"status"`
	Fault  string `json:"fault,omitempty"`
	// When the request arrived and when its answer was done, in ms since the start.
	Start int64 `json:"start_ms"`
	End   int64 `json:"end_ms"`
	// The request body's bytes that reached the registry, and whether they came
	// chunked (with no length announced).
	BytesIn int64 `json:"bytes_in"`
	Chunked bool  `json:"chunked,omitempty"`
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(b []byte) (int, error) {
	n, err := c.ReadCloser.Read(b)
	c.n += int64(n)
	return n, err
}

// throttledBody hands a request body on at `rate` bytes a second.
type throttledBody struct {
	io.ReadCloser
	rate  int64
	start time.Time
	n     int64
}

func (t *throttledBody) Read(b []byte) (int, error) {
	// Wait until the bytes read so far are due, then take a tenth of a second's worth.
	time.Sleep(time.Until(t.start.Add(time.Duration(t.n * int64(time.Second) / t.rate))))
	if most := max(t.rate/10, 1); int64(len(b)) > most {
		b = b[:most]
	}
	n, err := t.ReadCloser.Read(b)
	t.n += int64(n)
	return n, err
}

var started = time.Now()

type proxy struct {
	mu      sync.Mutex
	faults  []*fault
	entries []entry
	rp      *httputil.ReverseProxy
}

// take returns the first live fault matching the request and uses up one of its times.
func (p *proxy) take(r *http.Request) *fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.Times == 0 || (f.Method != "" && f.Method != r.Method) || !f.re.MatchString(r.URL.Path) {
			continue
		}
		if f.Times > 0 {
			f.Times--
		}
		return f
	}
	return nil
}

func (p *proxy) record(r *http.Request, status int, f *fault) {
	name := ""
	if f != nil {
		name = f.Action
	}
	at, _ := r.Context().Value(arrivedKey{}).(time.Time)
	var in int64
	if c, ok := r.Body.(*countingBody); ok {
		in = c.n
	}
	chunked := len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
	p.mu.Lock()
	p.entries = append(p.entries, entry{r.Method, r.URL.Path, r.URL.RawQuery, status, name,
		at.Sub(started).Milliseconds(), time.Since(started).Milliseconds(), in, chunked})
	p.mu.Unlock()
}

type arrivedKey struct{}

// statusWriter remembers the status the registry answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// recorder keeps the registry's whole answer, for faults that change it.
type recorder struct {
	header http.Header
	status int
	body   strings.Builder
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.status = code }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func (p *proxy) control(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/__proxy/faults" && r.Method == http.MethodPost:
		var add []*fault
		if err := json.NewDecoder(r.Body).Decode(&add); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, f := range add {
			re, err := regexp.Compile(f.Path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f.re = re
			if f.Action == "throttle" && f.Rate <= 0 {
				http.Error(w, "throttle needs a rate above 0 (bytes a second)", http.StatusBadRequest)
				return
			}
			if f.Times == 0 {
				f.Times = 1
			}
		}
		p.mu.Lock()
		p.faults = append(p.faults, add...)
		p.mu.Unlock()
	case r.URL.Path == "/__proxy/faults" && r.Method == http.MethodDelete:
		p.mu.Lock()
		p.faults = nil
		p.mu.Unlock()
	case r.URL.Path == "/__proxy/log" && r.Method == http.MethodGet:
		p.mu.Lock()
		out, _ := json.Marshal(p.entries)
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	case r.URL.Path == "/__proxy/log" && r.Method == http.MethodDelete:
		p.mu.Lock()
		p.entries = nil
		p.mu.Unlock()
	default:
		http.NotFound(w, r)
	}
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/__proxy/") {
		p.control(w, r)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), arrivedKey{}, time.Now()))
	r.Body = &countingBody{ReadCloser: r.Body}
	f := p.take(r)
	if f == nil {
		sw := &statusWriter{ResponseWriter: w, status: 200}
		p.rp.ServeHTTP(sw, r)
		p.record(r, sw.status, nil)
		return
	}
	switch f.Action {
	case "throttle":
		body := r.Body.(*countingBody)
		body.ReadCloser = &throttledBody{ReadCloser: body.ReadCloser, rate: f.Rate, start: time.Now()}
		sw := &statusWriter{ResponseWriter: w, status: 200}
		p.rp.ServeHTTP(sw, r)
		p.record(r, sw.status, f)
	case "status":
		if f.Forward {
			p.rp.ServeHTTP(&recorder{header: http.Header{}}, r)
		} else {
			io.Copy(io.Discard, r.Body)
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, `{"errors":[{"code":"UNAVAILABLE","message":"fault-proxy: injected %d"}]}`, f.Status)
		p.record(r, f.Status, f)
	case "reset", "stall":
		p.record(r, 0, f)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if f.Action == "stall" {
			time.Sleep(10 * time.Minute)
		}
		if tcp, ok := underlying(conn).(*net.TCPConn); ok {
			tcp.SetLinger(0)
		}
		conn.Close()
	case "garbage", "truncate":
		rec := &recorder{header: http.Header{}, status: 200}
		p.rp.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		body := rec.body.String()
		if f.Action == "garbage" {
			body = "\x00garbage from fault-proxy, not a manifest\xff"
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Header().Del("Docker-Content-Digest")
			w.WriteHeader(rec.status)
			io.WriteString(w, body)
			p.record(r, rec.status, f)
			return
		}
		w.WriteHeader(rec.status)
		io.WriteString(w, body[:len(body)/2])
		http.NewResponseController(w).Flush()
		p.record(r, rec.status, f)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	default:
		http.Error(w, "fault-proxy: unknown action "+f.Action, http.StatusInternalServerError)
	}
}

// delayedConn delivers every chunk `delay` after it arrived, in both directions,
// without holding up the chunks behind it: latency, not a bandwidth cap.
type delayedConn struct {
	net.Conn
	delay   time.Duration
	in      chan stamped
	pending []byte
	out     chan stamped
	done    chan struct{}
	once    sync.Once
	// Read deadlines live here, not on the socket: the server aborts reads with a
	// deadline in the past and then reads on, which must not end the stream.
	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{}
}

func (d *delayedConn) SetDeadline(t time.Time) error { return d.SetReadDeadline(t) }

func (d *delayedConn) SetWriteDeadline(time.Time) error { return nil }

func (d *delayedConn) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	d.deadline = t
	d.mu.Unlock()
	select {
	case d.changed <- struct{}{}:
	default:
	}
	return nil
}

type stamped struct {
	at   time.Time
	data []byte
	err  error
}

func newDelayedConn(c net.Conn, delay time.Duration) *delayedConn {
	d := &delayedConn{Conn: c, delay: delay, in: make(chan stamped, 1024), out: make(chan stamped, 1024),
		done: make(chan struct{}), changed: make(chan struct{}, 1)}
	go func() {
		for {
			buf := make([]byte, 64*1024)
			n, err := c.Read(buf)
			d.in <- stamped{time.Now(), buf[:n], err}
			if err != nil {
				close(d.in)
				return
			}
		}
	}()
	go func() {
		defer close(d.done)
		for s := range d.out {
			time.Sleep(time.Until(s.at.Add(delay)))
			if _, err := c.Write(s.data); err != nil {
				for range d.out {
				}
				return
			}
		}
	}()
	return d
}

func (d *delayedConn) Read(b []byte) (int, error) {
	for len(d.pending) == 0 {
		d.mu.Lock()
		deadline := d.deadline
		d.mu.Unlock()
		var expired <-chan time.Time
		if !deadline.IsZero() {
			if !time.Now().Before(deadline) {
				return 0, os.ErrDeadlineExceeded
			}
			timer := time.NewTimer(time.Until(deadline))
			defer timer.Stop()
			expired = timer.C
		}
		var s stamped
		var ok bool
		select {
		case s, ok = <-d.in:
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-d.changed:
			continue
		}
		if !ok {
			return 0, io.EOF
		}
		time.Sleep(time.Until(s.at.Add(d.delay)))
		if len(s.data) == 0 {
			return 0, s.err
		}
		d.pending = s.data
	}
	n := copy(b, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

func (d *delayedConn) Write(b []byte) (int, error) {
	d.out <- stamped{at: time.Now(), data: append([]byte(nil), b...)}
	return len(b), nil
}

func (d *delayedConn) Close() error {
	d.once.Do(func() {
		close(d.out)
		<-d.done
	})
	return d.Conn.Close()
}

func underlying(c net.Conn) net.Conn {
	if d, ok := c.(*delayedConn); ok {
		return d.Conn
	}
	return c
}

type delayedListener struct {
	net.Listener
	delay time.Duration
}

func (l delayedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.delay == 0 {
		return c, err
	}
	return newDelayedConn(c, l.delay), nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	upstream := flag.String("upstream", "", "registry HOST:PORT behind the proxy")
	latency := flag.Duration("latency", 0, "delay added to each chunk, each way")
	flag.Parse()
	if *upstream == "" {
		log.Fatal("fault-proxy: -upstream HOST:PORT is required")
	}
	target := &url.URL{Scheme: "http", Host: *upstream}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	rp.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	server := &http.Server{Handler: &proxy{rp: rp}, ErrorLog: log.New(io.Discard, "", 0)}
	log.Fatal(server.Serve(delayedListener{ln, *latency}))
}
