/* The same check as a C libfcgi responder (OpenSSL's HMAC and CRYPTO_memcmp): the ceiling for any FastCGI handler
 * behind this nginx. WORKERS (default 4) processes accept on the socket spawn-fcgi hands over on fd 0: the parent
 * and its forks, which end with it. */
#include <fcgiapp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void answer(FCGX_Stream *out, const char *status, const char *body, const char *extra) {
    FCGX_FPrintF(out, "Status: %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s", status, extra,
                 (int)strlen(body), body);
}

static void respond(FCGX_Request *request, const char *secret, unsigned char *body) {
    FCGX_ParamArray env = request->envp;
    const char *method = FCGX_GetParam("REQUEST_METHOD", env), *signature = FCGX_GetParam("HTTP_X_SIGNATURE", env);
    const char *length_text = FCGX_GetParam("CONTENT_LENGTH", env);
    if (!method || strcmp(method, "POST") != 0) {
        char text[128];
        snprintf(text, sizeof text, "{\"reason\":\"Method %.16s is not allowed on this route\"}", method ? method : "");
        answer(request->out, "405 Method Not Allowed", text, "Allow: POST\r\n");
        return;
    }
    unsigned char given[32];
    if (!signature || strlen(signature) != 64) { answer(request->out, "400 Bad Request", "{\"reason\":\"missing or malformed x-signature\"}", ""); return; }
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        if (sscanf(signature + 2 * i, "%2x", &byte) != 1) { answer(request->out, "400 Bad Request", "{\"reason\":\"malformed x-signature\"}", ""); return; }
        given[i] = (unsigned char)byte;
    }
    long length = length_text ? strtol(length_text, NULL, 10) : 0;
    if (length < 0 || length > 1048576) { answer(request->out, "413 Payload Too Large", "{\"reason\":\"too large\"}", ""); return; }
    int got = FCGX_GetStr((char *)body, (int)length, request->in);
    unsigned char mac[32];
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret), body, (size_t)got, mac, &mac_length);
    if (got != length || CRYPTO_memcmp(mac, given, 32) != 0) answer(request->out, "400 Bad Request", "{\"reason\":\"x-signature does not match the body\"}", "");
    else answer(request->out, "200 OK", "{\"verified\":true}", "");
}

int main(void) {
    const char *secret = getenv("API_SECRET_KEY");
    unsigned char *body = malloc(1048576);
    int workers = getenv("WORKERS") ? atoi(getenv("WORKERS")) : 4;
    pid_t parent = getpid();
    for (int i = 1; i < workers; i++) {
        if (fork() == 0) { prctl(PR_SET_PDEATHSIG, SIGTERM); if (getppid() != parent) return 1; break; }
    }
    FCGX_Request request;
    if (!secret || !body || FCGX_Init() != 0 || FCGX_InitRequest(&request, 0, 0) != 0) return 1;
    while (FCGX_Accept_r(&request) >= 0) respond(&request, secret, body);
    return 0;
}
