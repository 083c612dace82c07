/*
 * Prints the CPU features that decide which code paths ring and the
 * libraries take, as the CPU it runs on reports them (cpuid): run under
 * QEMU by benches/dpop_qemu.sh to show what a `-cpu` model exposes.
 */
#include <cpuid.h>
#include <stdio.h>

int main(void)
{
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    printf("adx=%u bmi2=%u avx2=%u sha_ni=%u\n",
           (b >> 19) & 1, (b >> 8) & 1, (b >> 5) & 1, (b >> 29) & 1);
    return 0;
}
