/* vctl's HTTP client: one request to the router, the whole body kept in memory. */
#ifndef VCTL_HTTP_H
#define VCTL_HTTP_H

#include <stddef.h>

typedef struct vctl_client {
    const char *base_url; /* "http://host:port", no trailing slash needed */
    const char *api_key;  /* sent as "Authorization: Bearer KEY" when not NULL */
    long timeout_s;       /* whole-request limit */
} vctl_client;

typedef struct vctl_response {
    long status; /* HTTP status code */
    char *body;  /* NUL-terminated (the router's bodies are text), owned */
    size_t len;
} vctl_response;

/* Sends METHOD (GET or POST, empty body) to base_url + path. Returns 0 when an HTTP answer came
 * back (any status; *out then owns the body), -1 when none did (connection refused, timeout, a
 * body over 64 MiB, a malformed URL): *out is empty and err holds a one-line reason. */
int vctl_http_request(const vctl_client *c, const char *method, const char *path,
                      vctl_response *out, char *err, size_t errlen);

/* Frees the body; NULL and an empty response are no-ops. */
void vctl_response_release(vctl_response *r);

#endif
