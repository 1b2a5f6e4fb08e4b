/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-32C (Castagnoli, the iSCSI polynomial 0x1EDC6F41, reflected), used for
 * every checksum in a snapshot.  Uses the SSE4.2 crc32 instruction where the
 * CPU has it and a slicing-by-8 table otherwise; both give identical results.
 */
#ifndef THAW_COMMON_CRC32C_H
#define THAW_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/*
 * Continue a CRC: start with crc = 0 and feed buffers in order;
 * thaw_crc32c(0, "123456789", 9) == 0xE3069283.
 */
uint32_t thaw_crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable implementation alone (exposed so tests can compare both). */
uint32_t thaw_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* 1 when the hardware path is in use. */
int thaw_crc32c_hw_available(void);

#endif
