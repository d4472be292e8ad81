#include "strmap.h"

#include "sds_error.h"

#include <string.h>

// Slots hold the key's hash (0 marks an empty slot) and where its bytes live in one arena, so
// growing the table never rehashes or moves key bytes.
typedef struct {
    uint64_t hash;
    uint64_t key_off; // into keys
    uint64_t key_len;
    int64_t value;
} strmap_slot;

struct sds_strmap {
    strmap_slot *slots;
    size_t cap; // power of two
    size_t count;
    char *keys; // each key followed by a NUL
    size_t keys_used, keys_cap;
};

static uint64_t strmap_mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

// Eight bytes per step, then a final avalanche; never returns 0.
static uint64_t strmap_hash(const char *key, size_t len) {
    const uint64_t k = 0x9e3779b97f4a7c15ULL;
    uint64_t h = (uint64_t)len * k;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, key + i, 8);
        h = (h ^ strmap_mix(w)) * k;
    }
    uint64_t tail = 0;
    for (size_t j = 0; i + j < len; j++) tail |= (uint64_t)(unsigned char)key[i + j] << (8 * j);
    h = strmap_mix(h ^ tail ^ 0x2545f4914f6cdd1dULL);
    return h ? h : 1;
}

int sds_strmap_init(size_t capacity_hint, sds_strmap **out) {
    *out = NULL;
    sds_strmap *m = sds_calloc(1, sizeof *m, "string map");
    if (!m) return SDS_ERR_IO;
    size_t cap = 16;
    while (cap < 2 * capacity_hint) cap *= 2;
    m->slots = sds_calloc(cap, sizeof *m->slots, "string map slots");
    m->keys_cap = 256 + capacity_hint * 8;
    m->keys = sds_malloc(m->keys_cap, "string map keys");
    if (!m->slots || !m->keys) {
        sds_strmap_free(m);
        return SDS_ERR_IO;
    }
    m->cap = cap;
    *out = m;
    return SDS_OK;
}

void sds_strmap_free(sds_strmap *map) {
    if (!map) return;
    free(map->slots);
    free(map->keys);
    free(map);
}

static size_t strmap_find(const sds_strmap *m, const char *key, size_t len, uint64_t h) {
    size_t mask = m->cap - 1;
    size_t i = (size_t)h & mask;
    for (;;) {
        const strmap_slot *s = &m->slots[i];
        if (s->hash == 0) return i;
        if (s->hash == h && s->key_len == len && memcmp(m->keys + s->key_off, key, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

static int strmap_grow(sds_strmap *m) {
    size_t cap = m->cap * 2;
    strmap_slot *slots = sds_calloc(cap, sizeof *slots, "string map slots");
    if (!slots) return SDS_ERR_IO;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].hash == 0) continue;
        size_t j = (size_t)m->slots[i].hash & (cap - 1);
        while (slots[j].hash != 0) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return SDS_OK;
}

int sds_strmap_put(sds_strmap *map, const char *key, size_t len, int64_t value) {
    uint64_t h = strmap_hash(key, len);
    size_t i = strmap_find(map, key, len, h);
    if (map->slots[i].hash != 0) {
        map->slots[i].value = value;
        return SDS_OK;
    }
    if (map->keys_used + len + 1 > map->keys_cap) {
        size_t cap = map->keys_cap * 2;
        while (map->keys_used + len + 1 > cap) cap *= 2;
        char *keys = realloc(map->keys, cap);
        if (!keys)
            return sds_error_set(SDS_ERR_IO, "out of memory growing a string map to %zu bytes",
                                 cap);
        map->keys = keys;
        map->keys_cap = cap;
    }
    // Keep the load factor at or below one half so probes stay short.
    if (2 * (map->count + 1) > map->cap) {
        SDS_TRY(strmap_grow(map));
        i = strmap_find(map, key, len, h);
    }
    memcpy(map->keys + map->keys_used, key, len);
    map->keys[map->keys_used + len] = '\0';
    map->slots[i] = (strmap_slot){h, map->keys_used, len, value};
    map->keys_used += len + 1;
    map->count++;
    return SDS_OK;
}

int sds_strmap_get(const sds_strmap *map, const char *key, size_t len, int64_t *value) {
    size_t i = strmap_find(map, key, len, strmap_hash(key, len));
    if (map->slots[i].hash == 0) return 0;
    if (value) *value = map->slots[i].value;
    return 1;
}

size_t sds_strmap_count(const sds_strmap *map) {
    return map->count;
}

void sds_strmap_clear(sds_strmap *map) {
    memset(map->slots, 0, map->cap * sizeof *map->slots);
    map->count = 0;
    map->keys_used = 0;
}

int sds_strmap_next(const sds_strmap *map, size_t *cursor, const char **key, size_t *len,
                    int64_t *value) {
    for (size_t i = *cursor; i < map->cap; i++) {
        const strmap_slot *s = &map->slots[i];
        if (s->hash == 0) continue;
        if (key) *key = map->keys + s->key_off;
        if (len) *len = (size_t)s->key_len;
        if (value) *value = s->value;
        *cursor = i + 1;
        return 1;
    }
    *cursor = map->cap;
    return 0;
}
