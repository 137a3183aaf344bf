/*
 * A stand-in bcryptprimitives.dll for running Rust programs under Wine 8 (Debian 12's Wine).
 *
 * Rust's std (1.78 and later) gets random bytes from ProcessPrng in bcryptprimitives.dll, which
 * every Windows 10+ has but Wine 8 does not: without it a Rust .exe stops at load ("Library
 * bcryptprimitives.dll not found", exit 53). This DLL exports only ProcessPrng and fills the
 * buffer from advapi32's RtlGenRandom (SystemFunction036), which Wine has.
 *
 * Only for Wine: scripts/build-windows puts it beside the .exe in the Wine folder, never beside
 * the .exe meant for real Windows (there the system's DLL must be used).
 *
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll bcryptprimitives.c -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom's exported name; ntsecapi.h declares it the same way. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
