/* Signs the bodies bench/durable.lua sends, faster than Python can (millions for a sustained run): body i is
 * {"n":i,"run":"RUN","pad":"x...x"} (980 x), its x-signature the hex HMAC-SHA256 keyed with SECRET. Thread t of
 * THREADS sends bodies t+1, t+1+THREADS, ...: their signatures go, one a line, to PREFIX-t.
 *
 * Usage: sign-bodies SECRET RUN COUNT THREADS PREFIX */
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s SECRET RUN COUNT THREADS PREFIX\n", argv[0]);
        return 2;
    }
    const char *secret = argv[1], *run = argv[2], *prefix = argv[5];
    long count = atol(argv[3]), threads = atol(argv[4]);
    char pad[981], body[1200], path[4096];
    memset(pad, 'x', 980);
    pad[980] = 0;
    for (long t = 0; t < threads; t++) {
        snprintf(path, sizeof path, "%s-%ld", prefix, t);
        FILE *out = fopen(path, "w");
        if (!out) { perror(path); return 1; }
        for (long i = t + 1; i <= count; i += threads) {
            int length = snprintf(body, sizeof body, "{\"n\":%ld,\"run\":\"%s\",\"pad\":\"%s\"}", i, run, pad);
            unsigned char mac[32];
            unsigned int size = 0;
            HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)body, (size_t)length, mac, &size);
            for (unsigned int b = 0; b < size; b++) fprintf(out, "%02x", mac[b]);
            fputc('\n', out);
        }
        if (fclose(out) != 0) { perror(path); return 1; }
    }
    return 0;
}
