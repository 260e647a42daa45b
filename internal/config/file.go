package config

// The shapes of the YAML file. Field comments are written for users: the
// config reference (docs/config.md), `labgate schema` and `labgate docs` are
// generated from them (go generate ./internal/config). Tags:
//
//	yaml:"name"        the key in the file
//	default:"value"    applied when the key is absent, as if it had been written
//	enum:"a|b|c"       the only accepted values
//	secret:""          a credential: also accepted as name_file, never printed
//	required:""        must be present
//	example:"value"    shown in the reference

// file is the top level of a labgate file.
type file struct {
	// Version of the file format. Always 1.
	Version int `yaml:"version" required:"" example:"1"`
	// Domain is appended to every host name without a dot: `vault` becomes `vault.example.org`.
	Domain string `yaml:"domain" example:"example.org"`
	// StateDir holds the internal CA, certificates, DNS ownership, health history and alert state.
	// A relative path is taken from the directory of this file.
	StateDir string `yaml:"state_dir" default:"/var/lib/labgate"`
	// Log configures labgate's logs and the access log.
	Log fileLog `yaml:"log"`
	// TLS says where certificates come from.
	TLS fileTLS `yaml:"tls"`
	// DNS configures the records labgate manages and its embedded DNS server.
	DNS fileDNS `yaml:"dns"`
	// Relay is read by `labgate relay -c FILE` on the VPS that forwards public ports to the gateway.
	Relay *fileRelay `yaml:"relay"`
	// Gateway lists what `labgate serve` listens on.
	Gateway fileGateway `yaml:"gateway"`
	// Alerts are named receivers that services refer to in their `alert` list.
	Alerts map[string]*fileReceiver `yaml:"alerts"`
	// Alerting says when alerts are sent: reminders, maintenance windows, and who hears
	// about problems that are not one service's (the relay, certificates, DNS).
	Alerting fileAlerting `yaml:"alerting"`
	// Services are what the lab exposes, each public or private.
	Services []*fileService `yaml:"services"`
	// Git makes `labgate serve` follow the lab's config in a git repository (GitOps). The file
	// given to `serve -c` then holds only version, state_dir, log and git; the lab's config is
	// the file at git.path in the repository, and every pushed revision is applied like a saved
	// file. See docs/gitops.md.
	Git *fileGit `yaml:"git"`
	// Status configures the status page, its badges and charts, the image cache and the health history.
	Status fileStatus `yaml:"status"`
	// Kubernetes names what the cluster uses, for `labgate render k8s` (see docs/kubernetes.md).
	Kubernetes fileKubernetes `yaml:"kubernetes"`
}

type fileGit struct {
	// URL of the repository: https://, http://, ssh://, git://, git@host:path, file:// or an absolute path.
	URL string `yaml:"url" required:"" example:"https://git.example.org/me/lab.git"`
	// Branch followed; a force-push to it is followed too.
	Branch string `yaml:"branch" default:"main"`
	// Path of the lab's config file in the repository. Files beside it (static sites, CA files,
	// secret files) are read from the same revision.
	Path string `yaml:"path" default:"lab.yaml"`
	// Interval between two fetches; each waits up to 10% more or less, at random.
	// A push webhook fetches at once.
	Interval duration `yaml:"interval" default:"1m"`
	// Username for HTTP(S) basic authentication (with password or token).
	Username string `yaml:"username"`
	// Password for HTTP(S) basic authentication.
	Password string `yaml:"password" secret:""`
	// Token is an access token (GitHub, Gitea, GitLab), sent as the basic-auth password.
	Token string `yaml:"token" secret:""`
	// SSHKeyFile is a private key for ssh:// and git@host:path URLs; the server's key must be
	// in ~/.ssh/known_hosts. A relative path is taken from the directory of this file.
	SSHKeyFile string `yaml:"ssh_key_file"`
	// AgeKeyFile holds the age identities that decrypt SOPS-encrypted values of the fetched
	// file, in addition to SOPS_AGE_KEY and SOPS_AGE_KEY_FILE from the environment.
	AgeKeyFile string `yaml:"age_key_file"`
	// Webhook lets the forge announce a push (GitHub and Gitea push webhooks, HMAC-signed),
	// so a change serves in seconds instead of at the next interval.
	Webhook *fileGitWebhook `yaml:"webhook"`
}

type fileGitWebhook struct {
	// Secret shared with the forge; requests with a missing or wrong signature are refused.
	Secret string `yaml:"secret" secret:"" required:""`
	// Listen is an address of its own for the webhook (host:port), served at /hooks/git, for a
	// forge that cannot reach the admin address. Empty: /hooks/git on gateway.admin.
	Listen string `yaml:"listen" example:"192.168.1.10:9183"`
}

type fileLog struct {
	// Format of log lines on standard error.
	Format string `yaml:"format" default:"text" enum:"text|json"`
	// Level is the least severe level written.
	Level string `yaml:"level" default:"info" enum:"debug|info|warn|error"`
	// Access writes one line per proxied request: real client IP, service, status, duration.
	Access bool `yaml:"access" default:"true"`
}

type fileTLS struct {
	// ACME obtains certificates from an ACME CA such as Let's Encrypt. Without it,
	// labgate issues certificates from its own internal CA (LAN-only labs, the quickstart)
	// and writes the CA's root to state_dir/ca/root.crt for your devices to trust.
	ACME *fileACME `yaml:"acme"`
	// PrivateWildcard uses one *.domain certificate for all private services, so their
	// names stay out of Certificate Transparency logs. With acme it needs dns.provider:
	// a wildcard can only be obtained with the DNS-01 challenge.
	PrivateWildcard bool `yaml:"private_wildcard" default:"false"`
}

type fileACME struct {
	// Email is the ACME account contact; the CA warns it before certificates expire.
	Email string `yaml:"email" required:"" example:"me@example.org"`
	// CA is `letsencrypt`, `letsencrypt-staging` or the URL of an ACME directory.
	CA string `yaml:"ca" default:"letsencrypt"`
	// CARoots are PEM files of extra roots to trust, besides the system's, for a private
	// ACME server's own HTTPS. Your devices still need that CA's root to trust its certificates.
	CARoots []string `yaml:"ca_roots"`
}

type fileDNS struct {
	// Provider of the public zone: records are created, updated and deleted for you.
	Provider *fileDNSProvider `yaml:"provider"`
	// Owner is the ownership id written in ExternalDNS-compatible TXT records; records
	// owned by anyone else are never changed.
	Owner string `yaml:"owner" default:"labgate"`
	// Resolvers are where DNS-01 propagation is checked (host:port): the zone's authoritative
	// servers are found through them, or they are asked directly when they are those servers
	// (a primary on a port of its own). Without it: the servers of /etc/resolv.conf.
	Resolvers []string `yaml:"resolvers" example:"[1.1.1.1:53]"`
	// Serve makes labgate answer for the lab's names itself (split DNS for a tailnet or LAN).
	Serve *fileDNSServe `yaml:"serve"`
	// Zone is the DNS zone labgate manages records in; host names outside it are left alone
	// (and listed by `labgate plan`). Empty: the domain.
	Zone string `yaml:"zone" example:"example.org"`
	// Flatten writes A/AAAA records for services instead of CNAMEs to the relay and private
	// names. Some VPN DNS clients cannot follow a CNAME (Tailscale's Android client, for one);
	// turn this on if private names do not resolve on such devices.
	Flatten bool `yaml:"flatten" default:"false"`
	// TTL of the records labgate writes, in seconds.
	TTL int `yaml:"ttl" default:"300"`
	// Interval between two reconciliations of the zone (each one up to 10% earlier or later,
	// at random). labgate also reconciles at start and whenever the file changes.
	Interval duration `yaml:"interval" default:"10m"`
	// Ownership is where labgate remembers which records it owns: `txt` writes an
	// ExternalDNS-compatible TXT record next to each one (a zone managed by ExternalDNS with
	// the same owner is adopted as is); `file` keeps the list in state_dir/dns-owned.json,
	// for DNS servers that store no TXT records (Pi-hole-like). Records not owned are never changed.
	Ownership string `yaml:"ownership" default:"txt" enum:"txt|file"`
}

type fileDNSProvider struct {
	// Type of the provider.
	Type string `yaml:"type" required:"" enum:"cloudflare|rfc2136|none"`
	// APIToken is a Cloudflare API token with Zone.DNS edit rights.
	APIToken string `yaml:"api_token" secret:""`
	// Server is the RFC2136 primary, host:port.
	Server string `yaml:"server" example:"ns1.example.org:53"`
	// TSIGName is the name of the RFC2136 TSIG key.
	TSIGName string `yaml:"tsig_name"`
	// TSIGAlgorithm of the TSIG key.
	TSIGAlgorithm string `yaml:"tsig_algorithm" default:"hmac-sha256" enum:"hmac-sha256|hmac-sha512|hmac-sha1"`
	// TSIGSecret is the base64 secret of the TSIG key.
	TSIGSecret string `yaml:"tsig_secret" secret:""`
	// Proxied (cloudflare only) sends public web services through Cloudflare's proxy (the
	// orange cloud): their records get proxied=true. Services with tcp or udp ports, the
	// relay and private names are never proxied. Behind Cloudflare, the relay sees
	// Cloudflare's addresses, not your visitors'.
	Proxied bool `yaml:"proxied" default:"false"`
}

type fileDNSServe struct {
	// Listen addresses (host:port, UDP and TCP) of the embedded DNS server.
	Listen []string `yaml:"listen" required:""`
}

type fileRelay struct {
	// Name of the relay: relay.example.org points at public_ips and public services CNAME to it.
	Name string `yaml:"name" default:"relay"`
	// PublicIPs of the VPS.
	PublicIPs []string `yaml:"public_ips" example:"[203.0.113.7]"`
	// Listen is where the VPS binds 80, 443 and the public tcp/udp ports.
	Listen string `yaml:"listen" default:"0.0.0.0"`
	// Gateway is the gateway's VPN address, where the relay forwards to.
	Gateway string `yaml:"gateway" required:"" example:"100.101.102.103"`
	// Admin is the relay's own /metrics and /healthz address on the VPS. Keep it on loopback or the VPN.
	Admin string `yaml:"admin" default:"127.0.0.1:9181"`
	// ConnectTimeout bounds connecting to the gateway over the VPN.
	ConnectTimeout duration `yaml:"connect_timeout" default:"5s"`
	// IdleTimeout closes a forwarded TCP connection after this long without a byte either way.
	IdleTimeout duration `yaml:"idle_timeout" default:"1h"`
	// MaxConnsPerSource bounds the concurrent connections one client address may hold open (for IPv6, one /64: a single host often owns a whole one), and its UDP flows on each port.
	MaxConnsPerSource int `yaml:"max_conns_per_source" default:"256"`
	// UDPFlowTimeout forgets a UDP client after this long without a datagram.
	UDPFlowTimeout duration `yaml:"udp_flow_timeout" default:"60s"`
	// Speedtest measures the path every public request takes: the gateway regularly moves a few
	// megabytes to and from the relay over the VPN and keeps the latency and throughput it saw.
	Speedtest *fileSpeedtest `yaml:"speedtest"`
}

type fileSpeedtest struct {
	// Listen is where the relay serves the measurement, host:port on the relay's VPN address.
	// The gateway connects to it from relay.gateway, the only source the relay answers.
	Listen string `yaml:"listen" required:"" example:"100.90.0.1:9182"`
	// Interval between two measurements; each one starts up to 10% earlier or later, at random.
	Interval duration `yaml:"interval" default:"10m"`
	// Budget is the number of bytes one measurement moves: half from the relay, half to it.
	// Write it in bytes: 4194304 is 4 MiB. Latency is measured with a few tiny requests on top.
	Budget int `yaml:"budget" default:"4194304"`
	// Samples is how many measurements the gateway keeps (in state_dir/relay-path.json, for the
	// status page); 1008 is a week at one every 10 minutes.
	Samples int `yaml:"samples" default:"1008"`
}

type fileGateway struct {
	// Public listeners are reached only through the relay: a PROXY header (v2, or v1)
	// is REQUIRED from trusted_relays and every other source is refused.
	Public *filePublic `yaml:"public"`
	// Private listeners serve VPN and LAN clients directly, private and public services alike.
	Private *filePrivate `yaml:"private"`
	// Admin is the address of /metrics, /healthz and the status UI. Keep it on loopback or the VPN.
	Admin string `yaml:"admin" default:"127.0.0.1:9180"`
	// Limits bound what one client can make the gateway hold.
	Limits fileLimits `yaml:"limits"`
}

type filePublic struct {
	// HTTPS addresses (host:port) that terminate TLS for public services.
	HTTPS []string `yaml:"https" example:"100.101.102.103:10443"`
	// HTTP addresses that redirect to HTTPS (and serve services with allow_http).
	HTTP []string `yaml:"http" example:"100.101.102.103:10080"`
	// TrustedRelays are the only sources accepted, as CIDR prefixes or addresses; each
	// connection must start with a PROXY header carrying the real client address.
	TrustedRelays []string `yaml:"trusted_relays" required:"" example:"[100.90.0.1/32]"`
}

type filePrivate struct {
	// Name of the private entry point: private-relay.example.org points at the gateway's
	// private address and private services CNAME to it.
	Name string `yaml:"name" default:"private-relay"`
	// HTTPS addresses (host:port).
	HTTPS []string `yaml:"https" example:"[100.101.102.103:443]"`
	// HTTP addresses (host:port).
	HTTP []string `yaml:"http" example:"[100.101.102.103:80]"`
	// Allow lists the sources admitted, as CIDR prefixes or addresses; empty admits every source.
	Allow []string `yaml:"allow" example:"[100.64.0.0/10, 192.168.1.0/24]"`
	// Address is what the private name resolves to. Empty: the IP addresses of the https
	// and http listeners (listeners on 0.0.0.0 or [::] give none: then set it here).
	Address []string `yaml:"address" example:"[100.101.102.103]"`
}

type fileLimits struct {
	// ProxyHeaderTimeout is how long a relay has to send the whole PROXY header.
	ProxyHeaderTimeout duration `yaml:"proxy_header_timeout" default:"5s"`
	// ReadHeaderTimeout is how long a client has to send a request's headers.
	ReadHeaderTimeout duration `yaml:"read_header_timeout" default:"10s"`
	// IdleTimeout closes keep-alive connections idle this long, and fails a request whose body sends nothing for this long (400).
	IdleTimeout duration `yaml:"idle_timeout" default:"2m"`
	// MaxHeaderBytes bounds the size of a request's headers.
	MaxHeaderBytes int `yaml:"max_header_bytes" default:"65536"`
	// BackendConnectTimeout bounds connecting to a backend; a backend that does not answer in time is skipped.
	BackendConnectTimeout duration `yaml:"backend_connect_timeout" default:"5s"`
	// BackendHeaderTimeout bounds the wait for a backend's response headers (504 after it); 0 waits forever.
	BackendHeaderTimeout duration `yaml:"backend_header_timeout" default:"60s"`
	// ShutdownGrace is how long requests in flight may finish on stop and on reload.
	ShutdownGrace duration `yaml:"shutdown_grace" default:"30s"`
}

type fileReceiver struct {
	// Matrix posts to a room as a bot account.
	Matrix *fileMatrix `yaml:"matrix"`
	// Webhook posts JSON.
	Webhook *fileWebhook `yaml:"webhook"`
	// Ntfy publishes to an ntfy topic.
	Ntfy *fileNtfy `yaml:"ntfy"`
	// Email sends mail over SMTP.
	Email *fileEmail `yaml:"email"`
}

type fileMatrix struct {
	// Homeserver URL.
	Homeserver string `yaml:"homeserver" required:"" example:"https://matrix.example.org"`
	// Room id.
	Room string `yaml:"room" required:"" example:"!abc:example.org"`
	// AccessToken of the bot account.
	AccessToken string `yaml:"access_token" secret:"" required:""`
}

type fileWebhook struct {
	// URL to POST to.
	URL string `yaml:"url" required:""`
	// Secret signs the body with HMAC-SHA256.
	Secret string `yaml:"secret" secret:""`
}

type fileNtfy struct {
	// URL of the topic, e.g. https://ntfy.sh/my-lab.
	URL string `yaml:"url" required:""`
	// Token for a protected topic.
	Token string `yaml:"token" secret:""`
}

type fileEmail struct {
	// SMTP server, host:port.
	SMTP string `yaml:"smtp" required:""`
	// From address.
	From string `yaml:"from" required:""`
	// To addresses.
	To []string `yaml:"to" required:""`
	// Username for SMTP authentication.
	Username string `yaml:"username"`
	// Password for SMTP authentication.
	Password string `yaml:"password" secret:""`
}

type fileService struct {
	// Name of the service, used in logs, metrics and alerts: lower case letters, digits and dashes.
	Name string `yaml:"name" required:"" example:"vaultwarden"`
	// Host name the service answers on; without a dot, the domain is appended.
	Host string `yaml:"host" example:"vault"`
	// Hosts, when the service answers on several names. `*.name` matches one label.
	Hosts []string `yaml:"hosts"`
	// Path prefix the service answers under on its hosts; the longest prefix wins.
	Path string `yaml:"path" default:"/"`
	// Expose is `private` (VPN and LAN only) or `public` (also through the relay). A private service's host and path stay private even under a public service's shorter path or `*.` host.
	Expose string `yaml:"expose" default:"private" enum:"private|public"`
	// Backend URL (http:// or https://).
	Backend string `yaml:"backend" example:"http://192.168.1.20:8080"`
	// Backends, load-balanced and health-aware.
	Backends []string `yaml:"backends"`
	// Static serves a directory of files instead of proxying. A relative path is taken from the directory of this file.
	Static string `yaml:"static"`
	// Echo answers every request itself with what labgate saw and what a backend would get
	// (client address, forwarded headers): for trying labgate out and for debugging a relay.
	Echo bool `yaml:"echo" default:"false"`
	// Passthrough forwards TLS connections for the service's hosts, still encrypted, to a
	// backend that terminates TLS itself with its own certificate: labgate reads only the
	// server name the client asks for and never holds a certificate for these hosts. Set
	// host (or hosts) with it, and none of backend, backends, static and echo.
	Passthrough *filePassthrough `yaml:"passthrough"`
	// BackendTLS configures how https:// backends are verified.
	BackendTLS fileBackendTLS `yaml:"backend_tls"`
	// AllowHTTP serves the service on the HTTP listeners instead of redirecting to HTTPS.
	AllowHTTP bool `yaml:"allow_http" default:"false"`
	// Health checks the service's backends. Its checks decide the service's state (status
	// page, alerts). The first http check (the implicit one of `path` without `checks`, else
	// the first `type: http`) also decides which backends take requests: a backend that fails
	// a round is out of rotation until it passes one (a warning such as slow still passes),
	// whatever `failures` and `successes` say; each backend is requested once per round. A
	// service whose checks have no http check gets a request of `path` on each backend every
	// interval for this alone.
	Health *fileHealth `yaml:"health"`
	// Metrics is the path of the service's Prometheus metrics on its backend.
	Metrics string `yaml:"metrics" example:"/metrics"`
	// Alert names the receivers told when the service breaks.
	Alert []string `yaml:"alert" example:"[phone]"`
	// TCP ports forwarded to backends (mail, MQTT, SSH, game servers).
	TCP []*fileL4 `yaml:"tcp"`
	// UDP ports forwarded to backends.
	UDP []*fileL4 `yaml:"udp"`
	// Kubernetes changes how `labgate render k8s` renders this service.
	Kubernetes fileServiceKubernetes `yaml:"kubernetes"`
}

type fileBackendTLS struct {
	// CAFile is a PEM file of roots that sign the backend's certificate.
	CAFile string `yaml:"ca_file"`
	// ServerName to verify instead of the backend URL's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any certificate. Only for backends on a trusted network.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" default:"false"`
}

type fileHealth struct {
	// Path requested on each backend by the default http check when `checks` is empty (and
	// by http checks without a path), which also takes a failing backend out of rotation;
	// when no check is an http check, requested on each backend only for the rotation.
	Path string `yaml:"path" default:"/"`
	// Interval between checks. Each round starts up to 10% earlier or later, at random, so
	// checks do not all fire at once.
	Interval duration `yaml:"interval" default:"30s"`
	// Timeout of one check. An http check requests all backends at the same time, each
	// within the timeout.
	Timeout duration `yaml:"timeout" default:"5s"`
	// Status expected; 0 accepts any 2xx or 3xx.
	Status int `yaml:"status" default:"0"`
	// Checks decide whether the service is up. Empty: one http check of `path` on each
	// backend (or a tcp check of each tcp port for a service without backends).
	Checks []*fileCheck `yaml:"checks"`
	// Outside also runs the checks of a public service the way a stranger reaches it: the
	// host is resolved with dns.resolvers (or the system's) and the connection goes to what
	// it resolves to, the relay, with the service's host as TLS server name and HTTP Host.
	// When outside fails while inside passes, the service is `degraded` (exposure broken),
	// not down. `auto` is on for public services when the file has a relay section.
	Outside string `yaml:"outside" default:"auto" enum:"auto|on|off"`
	// Failures is how many rounds in a row must fail before the service is down (and alerted).
	Failures int `yaml:"failures" default:"3"`
	// Successes is how many rounds in a row must pass before a down service is up again.
	Successes int `yaml:"successes" default:"2"`
}

type fileCheck struct {
	// Type of the check: `http` (a request and its answer), `tcp` (a connection is accepted),
	// `tls` (a handshake, and the certificate's days left), `dns` (the host resolves).
	Type string `yaml:"type" required:"" enum:"http|tcp|tls|dns"`
	// Name of the check in metrics, alerts and the status page; defaults to the type
	// (and a number when a type repeats).
	Name string `yaml:"name"`
	// Path requested by an http check; defaults to health.path.
	Path string `yaml:"path"`
	// Status an http check expects; 0 takes health.status (any 2xx or 3xx when that is 0 too).
	Status int `yaml:"status" default:"0"`
	// Body is text the answer of an http check must contain.
	Body string `yaml:"body"`
	// JSON checks one field of a JSON answer.
	JSON *fileCheckJSON `yaml:"json"`
	// MaxLatency marks the service degraded when a passing check took longer than this, or
	// when the requests labgate proxied to it took longer on average over the last minute.
	MaxLatency duration `yaml:"max_latency" default:"0s"`
	// Address (host:port) of a tcp or tls check. Defaults: the first backend (tls, http
	// checks), the first tcp port's backend (tcp).
	Address string `yaml:"address" example:"192.168.1.30:25"`
	// MinDaysLeft is the fewest days a tls check accepts before the certificate expires;
	// below it the service is degraded. Also applied to https:// http checks. A short-lived
	// certificate is only late with less than a third of its lifetime left.
	MinDaysLeft int `yaml:"min_days_left" default:"14"`
	// Host resolved by a dns check; defaults to the service's first host.
	Host string `yaml:"host"`
	// Expect lists addresses a dns check must find among the answers; empty: the relay's
	// public_ips for a public service, any answer otherwise.
	Expect []string `yaml:"expect" example:"[203.0.113.7]"`
}

type fileCheckJSON struct {
	// Field is a dotted path into the JSON answer, e.g. `status` or `db.ok`.
	Field string `yaml:"field" required:"" example:"status"`
	// Equals is the expected value, compared as text (`true`, `42`, `ok`).
	Equals string `yaml:"equals" required:"" example:"ok"`
}

type fileAlerting struct {
	// Reminder repeats an alert that is still firing this often; 0s never repeats.
	Reminder duration `yaml:"reminder" default:"4h"`
	// Notify lists the receivers told about problems that are no one service's: the relay
	// unreachable, a certificate renewal or a DNS update that failed. Empty: every receiver.
	Notify []string `yaml:"notify" example:"[ops]"`
	// Maintenance windows: while one is on, its services' alerts are held back (checks and
	// the status page go on). An alert still firing when the window ends is sent then.
	Maintenance []*fileMaintenance `yaml:"maintenance"`
}

type fileMaintenance struct {
	// Services in maintenance; empty: all of them, and the alerts that are no one service's.
	Services []string `yaml:"services" example:"[nextcloud]"`
	// Start of a one-off window, RFC 3339.
	Start string `yaml:"start" example:"2026-12-01T02:00:00Z"`
	// End of a one-off window, RFC 3339.
	End string `yaml:"end" example:"2026-12-01T04:00:00Z"`
	// Weekly is a window that repeats every week: days and a time range, `sun 03:00-04:30`
	// or `mon,thu 22:00-02:00` (a range past midnight ends the next day).
	Weekly string `yaml:"weekly" example:"sun 03:00-04:30"`
	// Timezone of the weekly window, an IANA name; defaults to the machine's.
	Timezone string `yaml:"timezone" example:"Europe/Berlin"`
}

type fileL4 struct {
	// Port the gateway (and the relay, for public services) listens on.
	Port int `yaml:"port" required:"" example:"25"`
	// Backend address, host:port.
	Backend string `yaml:"backend" required:"" example:"192.168.1.30:25"`
	// ProxyProtocol sends a PROXY header with the real client address to the backend.
	ProxyProtocol string `yaml:"proxy_protocol" default:"none" enum:"none|v1|v2"`
}

type filePassthrough struct {
	// Backend address, host:port, of a server that speaks TLS itself (often port 443).
	Backend string `yaml:"backend" required:"" example:"192.168.1.40:443"`
	// ProxyProtocol sends a PROXY header with the real client address to the backend,
	// before the client's TLS bytes. Only for a backend configured to expect one.
	ProxyProtocol string `yaml:"proxy_protocol" default:"none" enum:"none|v1|v2"`
}

type fileStatus struct {
	// Title heads the status page.
	Title string `yaml:"title" default:"labgate status"`
	// Public serves a read-only status page to everyone on a host of its own, on the public and
	// private listeners like a public service. It shows public services only, without backends,
	// error details, the relay's address or the config revision, and serves their badges and charts
	// (for READMEs) and the images marked public. Absent: the status page is on the admin listener only.
	Public *fileStatusPublic `yaml:"public"`
	// Images are kept copies of images from elsewhere, such as a Grafana panel's render URL, served at
	// /img/NAME: fetched when asked for and again after their interval, one fetch at a time, the last good
	// image served while a fetch runs and when the source fails or answers something that is not an image.
	Images []*fileImage `yaml:"images"`
	// History says how long the health history (state_dir/history.db) keeps each resolution.
	History fileHistory `yaml:"history"`
}

type fileStatusPublic struct {
	// Host of the public status page; without a dot, the domain is appended.
	Host string `yaml:"host" required:"" example:"status"`
}

type fileImage struct {
	// Name of the image in its URL, /img/NAME: lower case letters, digits and dashes.
	Name string `yaml:"name" required:"" example:"cpu"`
	// URL the image is fetched from (http:// or https://), with whatever it needs in its query.
	URL string `yaml:"url" required:"" example:"http://127.0.0.1:3000/render/d-solo/abc/lab?panelId=2&width=600&height=300"`
	// BearerToken is sent with each fetch as `Authorization: Bearer …`: a Grafana service
	// account token (role Viewer is enough to render panels). A redirect takes it along only
	// to the same host or one of its subdomains.
	BearerToken string `yaml:"bearer_token" secret:""`
	// Interval after which the image is fetched again when asked for.
	Interval duration `yaml:"interval" default:"5m"`
	// Public also serves the image on the public status page.
	Public bool `yaml:"public" default:"false"`
}

type fileHistory struct {
	// Raw is how long every single check result is kept.
	Raw duration `yaml:"raw" default:"48h"`
	// Fine is how long five-minute summaries (state times, latency min/avg/max) are kept.
	Fine duration `yaml:"fine" default:"336h"`
	// Daily is how long daily summaries are kept: the uptime bars and badges read them.
	Daily duration `yaml:"daily" default:"9600h"`
}

type fileKubernetes struct {
	// Namespace of the rendered objects. Empty leaves it out, for the namespace that
	// kubectl or the Argo CD Application's destination gives.
	Namespace string `yaml:"namespace" example:"lab"`
	// IngressClass names the two ingress classes (output ingress).
	IngressClass fileClassNames `yaml:"ingress_class"`
	// Gateway names the two Gateways rendered for output gateway-api, in the namespace above.
	Gateway fileClassNames `yaml:"gateway"`
	// GatewayClass names the GatewayClasses of the two Gateways (output gateway-api).
	GatewayClass fileClassNames `yaml:"gateway_class"`
	// ClusterIssuer is the cert-manager ClusterIssuer that signs the services' certificates.
	ClusterIssuer string `yaml:"cluster_issuer" default:"letsencrypt-prod"`
	// ExternalDNSAnnotations says which ExternalDNS annotation prefixes are written: `both`,
	// `alpha` (external-dns.alpha.kubernetes.io/, what older releases such as v0.13 read) or
	// `current` (external-dns.kubernetes.io/, what v0.22 reads).
	ExternalDNSAnnotations string `yaml:"external_dns_annotations" default:"both" enum:"both|alpha|current"`
	// TCPServices are the ingress-nginx tcp-services ConfigMaps of the two controllers,
	// `namespace/name` as given to the controller's --tcp-services-configmap.
	TCPServices fileTCPServices `yaml:"tcp_services"`
	// UDPServices are the ingress-nginx udp-services ConfigMaps, as --udp-services-configmap.
	UDPServices fileUDPServices `yaml:"udp_services"`
	// SecretStore is the External Secrets store that holds the lab's credentials: secrets
	// reach the cluster as ExternalSecrets, never as rendered Secrets.
	SecretStore fileSecretStore `yaml:"secret_store"`
	// BlackboxExporter is the address (host:port) of the blackbox exporter that Probes send
	// the services' health checks through.
	BlackboxExporter string `yaml:"blackbox_exporter" default:"blackbox-exporter.monitoring.svc:9115"`
}

type fileClassNames struct {
	// Public is the name for public services (reached through the relay).
	Public string `yaml:"public" default:"public"`
	// Private is the name for private services (VPN and LAN only).
	Private string `yaml:"private" default:"private"`
}

type fileTCPServices struct {
	// Public controller's ConfigMap, namespace/name.
	Public string `yaml:"public" default:"ingress-public/tcp-services"`
	// Private controller's ConfigMap, namespace/name.
	Private string `yaml:"private" default:"ingress-private/tcp-services"`
}

type fileUDPServices struct {
	// Public controller's ConfigMap, namespace/name.
	Public string `yaml:"public" default:"ingress-public/udp-services"`
	// Private controller's ConfigMap, namespace/name.
	Private string `yaml:"private" default:"ingress-private/udp-services"`
}

type fileSecretStore struct {
	// Name of the store.
	Name string `yaml:"name" default:"labgate"`
	// Kind of the store.
	Kind string `yaml:"kind" default:"ClusterSecretStore" enum:"ClusterSecretStore|SecretStore"`
}

type fileServiceKubernetes struct {
	// Service names a Service already in the cluster that serves this service (in the
	// rendered namespace): the Ingress routes to it at the backend's port, and no Service
	// is rendered for the backend.
	Service string `yaml:"service" example:"longhorn-frontend"`
	// TLSSecret is the Secret cert-manager writes the certificate to; `NAME-tls` by default.
	TLSSecret string `yaml:"tls_secret" example:"longhorn-tls-certificate"`
}
