-- wrk script used for every benchmark path: connect to 127.0.0.1 whatever the
-- URL's host name is. The URL keeps its host name, so wrk still sends it as the
-- Host header and as TLS SNI (app.bench.localhost), which labgate and the TLS
-- peers need, without an /etc/hosts entry. wrk does not verify certificates;
-- http.sh checks each TLS path once with curl --cacert before loading it.
wrk.resolve = function(host, service)
  wrk.addrs = wrk.lookup("127.0.0.1", service)
end
