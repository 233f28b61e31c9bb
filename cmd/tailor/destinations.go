package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tailorcdp/tailor/config"
	"github.com/tailorcdp/tailor/deliver"
	"github.com/tailorcdp/tailor/engine"
	"github.com/tailorcdp/tailor/stream"
)

func destinationsCommand() *command {
	var name, addr, secret string
	return &command{
		name: "destinations",
		args: "replay --destination NAME | receive --listen ADDR --secret SECRET",
		summary: "replay: send a destination's dead letters again (once the receiver is fixed); " +
			"receive: a local webhook receiver printing each verified change",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&name, "destination", "", "replay: the destination whose dead letters are sent again")
			fs.StringVar(&addr, "listen", "127.0.0.1:9000", "receive: the address to listen on")
			fs.StringVar(&secret, "secret", "", "receive: the destination's webhook secret, to verify signatures")
		},
		run: func(ctx context.Context, cfg *config.Config, fs *flag.FlagSet, stdout, stderr io.Writer) error {
			switch fs.Arg(0) {
			case "replay":
				return replayDestination(ctx, cfg, name, stdout)
			case "receive":
				return receiveChanges(ctx, addr, secret, stdout)
			}
			return fmt.Errorf("want replay or receive after destinations, got %q", fs.Arg(0))
		},
	}
}

// replayDestination sends the dead letters of destination name again.
func replayDestination(ctx context.Context, cfg *config.Config, name string, stdout io.Writer) error {
	d, ok := cfg.Destinations[name]
	if !ok {
		return fmt.Errorf("no destination %q in the configuration (%s)", name, cfg.Source)
	}
	client, err := engine.ClientConfig(cfg)
	if err != nil {
		return err
	}
	if len(client.Brokers) == 0 {
		client.Brokers = []string{"127.0.0.1:" + strconv.Itoa(cfg.Embedded.Port)}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := engine.Ping(pctx, client); err != nil {
		return err
	}
	st, err := deliver.Replay(ctx, deliver.ReplayConfig{
		Client:          client.Opts(),
		DeadLetterTopic: stream.NewTopics(cfg.Kafka.TopicPrefix).DeliverDeadLetter,
		Group:           cfg.Kafka.Group + "-deliver-replay." + name,
		Destination:     engine.Destination(name, d),
	})
	fmt.Fprintf(stdout, "replayed %d dead letters to %s\n", st.Sent, name)
	return err
}

// receiveChanges serves a webhook on addr that verifies each request's
// signature with secret and prints its body, until ctx ends.
func receiveChanges(ctx context.Context, addr, secret string, stdout io.Writer) error {
	if secret == "" {
		return errors.New("receive needs --secret: the destination's webhook.secret")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	var mu sync.Mutex
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := deliver.Verify([]byte(secret), r.Header.Get(deliver.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		fmt.Fprintf(stdout, "%s %s\n", r.Header.Get(deliver.IdempotencyHeader), body)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	fmt.Fprintf(stdout, "receiving on http://%s/\n", ln.Addr())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
