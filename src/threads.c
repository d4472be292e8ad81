#include "threads.h"

#include "sds_error.h"

#include <pthread.h>

void sds_threads_run(int32_t m, void *(*fn)(void *), void *jobs, size_t size) {
    SDS_ASSERT(m >= 1 && m <= SDS_THREADS_MAX && fn && jobs);
    char *job = jobs;
    pthread_t th[SDS_THREADS_MAX];
    int spawned[SDS_THREADS_MAX] = {0};
    for (int32_t i = 1; i < m; i++)
        spawned[i] = pthread_create(&th[i], NULL, fn, job + (size_t)i * size) == 0;
    fn(job);
    for (int32_t i = 1; i < m; i++) {
        if (spawned[i])
            pthread_join(th[i], NULL);
        else
            fn(job + (size_t)i * size);
    }
}
