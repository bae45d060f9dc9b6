/* The same check as a C CGI program (OpenSSL's HMAC and CRYPTO_memcmp), run by fcgiwrap: the floor for a CGI. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void answer(const char *status, const char *body, const char *extra) {
    printf("Status: %s\r\nContent-Type: application/json\r\n%sContent-Length: %zu\r\n\r\n%s", status, extra, strlen(body), body);
}

int main(void) {
    const char *method = getenv("REQUEST_METHOD"), *signature = getenv("HTTP_X_SIGNATURE");
    const char *secret = getenv("API_SECRET_KEY"), *length_text = getenv("CONTENT_LENGTH");
    if (!method || strcmp(method, "POST") != 0) {
        char body[128];
        snprintf(body, sizeof body, "{\"reason\":\"Method %.16s is not allowed on this route\"}", method ? method : "");
        answer("405 Method Not Allowed", body, "Allow: POST\r\n");
        return 0;
    }
    unsigned char given[32];
    if (!signature || strlen(signature) != 64) { answer("400 Bad Request", "{\"reason\":\"missing or malformed x-signature\"}", ""); return 0; }
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        if (sscanf(signature + 2 * i, "%2x", &byte) != 1) { answer("400 Bad Request", "{\"reason\":\"malformed x-signature\"}", ""); return 0; }
        given[i] = (unsigned char)byte;
    }
    long length = length_text ? strtol(length_text, NULL, 10) : 0;
    if (length < 0 || length > 1048576) { answer("413 Payload Too Large", "{\"reason\":\"too large\"}", ""); return 0; }
    unsigned char *body = malloc(length + 1);
    long got = 0;
    while (got < length) { ssize_t n = read(0, body + got, length - got); if (n <= 0) break; got += n; }
    unsigned char mac[32];
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), secret, (int)strlen(secret ? secret : ""), body, (size_t)got, mac, &mac_length);
    if (got != length || CRYPTO_memcmp(mac, given, 32) != 0) answer("400 Bad Request", "{\"reason\":\"x-signature does not match the body\"}", "");
    else answer("200 OK", "{\"verified\":true}", "");
    return 0;
}
