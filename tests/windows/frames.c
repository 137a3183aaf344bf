/*
 * The `command` program of tests/windows.rs, built for Windows with mingw and for Linux with cc:
 * `frames OUT DELAY_MS` waits DELAY_MS, then writes one line to OUT (a frame file) and says so.
 * C, not Rust: it needs neither std nor the Wine ProcessPrng shim, and builds in a second.
 */
#include <stdio.h>
#include <stdlib.h>
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
    if (argc != 3) {
        fprintf(stderr, "usage: frames OUT DELAY_MS\n");
        return 2;
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
