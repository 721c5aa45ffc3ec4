/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the minimal ProtoPCIem card (protopciem_card.c) and its test
 * (protopciem_test.c) agree on: the checksum the card logs, and the bytes a
 * card's memory (BAR2) holds when it starts.
 */
#ifndef PROTOPCIEM_CARD_H
#define PROTOPCIEM_CARD_H

#include <stddef.h>
#include <stdint.h>

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#endif

/* FNV-1a 32 of @n bytes. */
static inline uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

/* Byte @i of the memory of a card started with -s @seed: differs per seed and per offset. */
static inline uint8_t card_mem_byte(unsigned int seed, size_t i)
{
	return (uint8_t)(i * 31 + (i >> 9) + seed * 101 + 7);
}

#endif /* PROTOPCIEM_CARD_H */
