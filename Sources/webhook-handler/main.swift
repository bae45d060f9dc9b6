import WebhookGateway

#if canImport(Glibc)
import Glibc
#endif

// A web server that runs us as a CGI program passes the request in the environment, and may pass words of the
// query string as arguments (RFC 3875 §4.4): in that case the command line is not ours to parse.
if CGI.isInvoked && !FastCGIServer.isHandedListener {
    exit(CGI.serve(verifier: Settings.verifierFromEnvironment(), spool: Settings.spool(directory: nil),
                   hook: Settings.hook(command: nil, timeoutSeconds: nil, concurrency: nil),
                   accessLog: Settings.accessLogFromEnvironment()))
}
WebhookHandler.main()
