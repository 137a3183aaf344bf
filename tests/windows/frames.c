/*
 * The `command` program of tests/windows.rs, built for Windows with mingw and for Linux with cc:
 * `frames OUT DELAY_MS [GATE]` first creates OUT.started (it runs), then, given GATE, waits until
 * the file GATE exists, then waits DELAY_MS, then writes one line to OUT (a frame file) and says
 * so. The gate lets a test kill the node while the program certainly runs.
 * C, not Rust: it needs neither std nor the Wine ProcessPrng shim, and builds in a second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#define sleep_ms(ms) Sleep(ms)
#else
#include <time.h>
static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}
#endif

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: frames OUT DELAY_MS [GATE]\n");
        return 2;
    }
    size_t len = strlen(argv[1]);
    char *started = malloc(len + sizeof ".started");
    if (started == NULL) {
        return 1;
    }
    memcpy(started, argv[1], len);
    memcpy(started + len, ".started", sizeof ".started");
    FILE *mark = fopen(started, "w");
    if (mark == NULL || fclose(mark) != 0) {
        perror(started);
        return 1;
    }
    free(started);
    if (argc == 4) {
        FILE *gate;
        while ((gate = fopen(argv[3], "r")) == NULL) {
            sleep_ms(50);
        }
        fclose(gate);
    }
    sleep_ms(atol(argv[2]));
    FILE *f = fopen(argv[1], "w");
    if (f == NULL) {
        perror(argv[1]);
        return 1;
    }
#ifdef _WIN32
    fprintf(f, "frame from windows\n");
#else
    fprintf(f, "frame from linux\n");
#endif
    if (fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    printf("wrote %s\n", argv[1]);
    fflush(stdout);
    return 0;
}
