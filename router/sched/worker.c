#include "sched/worker.h"

#include <stdlib.h>
#include <string.h>

void vr_registry_init(vr_registry *r) { memset(r, 0, sizeof *r); }

void vr_registry_clear(vr_registry *r)
{
    for (int i = 0; i < r->n; i++)
        free(r->w[i]);
    memset(r, 0, sizeof *r);
}

vr_worker *vr_registry_find(vr_registry *r, const char *id)
{
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->w[i]->id, id) == 0)
            return r->w[i];
    return NULL;
}

vr_worker *vr_registry_get_or_add(vr_registry *r, const char *id)
{
    vr_worker *w = vr_registry_find(r, id);
    if (w != NULL)
        return w;
    if (r->n >= VR_MAX_WORKERS || strlen(id) > VESTA_PROTO_MAX_ID)
        return NULL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->slot = (uint16_t)r->n;
    strcpy(w->id, id);
    w->state = VR_WORKER_DEAD;
    r->w[r->n++] = w;
    return w;
}

int vr_registry_count(const vr_registry *r, vr_worker_state state)
{
    int c = 0;
    for (int i = 0; i < r->n; i++)
        c += r->w[i]->state == state;
    return c;
}

const char *vr_worker_state_name(vr_worker_state s)
{
    switch (s) {
    case VR_WORKER_LIVE: return "live";
    case VR_WORKER_DRAINING: return "draining";
    case VR_WORKER_LEFT: return "left";
    default: return "dead";
    }
}
