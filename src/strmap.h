// Open-addressing hash map from byte strings to int64 values: vocabularies, word caches, GGUF
// metadata keys. Keys are copied in; lookups take (pointer, length), so a key need not be
// NUL-terminated and may hold NUL bytes. Not thread-safe (one thread per rank).
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct sds_strmap sds_strmap;

// capacity_hint: expected number of keys (0 is fine; the map grows). Out of memory is
// SDS_ERR_IO with the message recorded.
int sds_strmap_init(size_t capacity_hint, sds_strmap **out);
void sds_strmap_free(sds_strmap *map);

// Inserts key, or replaces its value when present.
int sds_strmap_put(sds_strmap *map, const char *key, size_t len, int64_t value);
// 1 with *value set when key is present, else 0 (*value untouched). value may be NULL.
int sds_strmap_get(const sds_strmap *map, const char *key, size_t len, int64_t *value);
size_t sds_strmap_count(const sds_strmap *map);
// Removes every key and keeps the allocations.
void sds_strmap_clear(sds_strmap *map);

// Visits every entry in no particular order: start with *cursor = 0, returns 1 per entry and 0
// at the end. *key is NUL-terminated and stays valid until the map is changed.
int sds_strmap_next(const sds_strmap *map, size_t *cursor, const char **key, size_t *len,
                    int64_t *value);
