#include "http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* /metrics of a 1000-worker cluster is a few MiB; anything far larger is not a router. */
#define VCTL_MAX_BODY ((size_t)64 << 20)

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    vctl_response *r = user;
    size_t n = size * nmemb;
    if (n > VCTL_MAX_BODY - r->len)
        return 0; /* curl then fails the transfer with CURLE_WRITE_ERROR */
    char *grown = realloc(r->body, r->len + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + r->len, data, n);
    r->len += n;
    grown[r->len] = '\0';
    r->body = grown;
    return n;
}

static char *join_url(const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    size_t n = bl + strlen(path) + 1;
    char *url = malloc(n);
    if (url != NULL)
        snprintf(url, n, "%.*s%s", (int)bl, base, path);
    return url;
}

int vctl_http_request(const vctl_client *c, const char *method, const char *path,
                      vctl_response *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *url = join_url(c->base_url, path);
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char *auth = NULL;
    int rc = -1;
    if (url == NULL || h == NULL) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (c->api_key != NULL) {
        size_t n = strlen(c->api_key) + 32;
        auth = malloc(n);
        if (auth == NULL) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
        snprintf(auth, n, "Authorization: Bearer %s", c->api_key);
        hdrs = curl_slist_append(hdrs, auth);
    }
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, c->timeout_s < 5 ? c->timeout_s : 5L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "vctl");
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "cannot reach the router at %s: %s", url,
                 cerr[0] ? cerr : curl_easy_strerror(cc));
        vctl_response_release(out);
        goto done;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    if (out->body == NULL) { /* an empty body: keep the "always a string" promise */
        out->body = calloc(1, 1);
        if (out->body == NULL) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
    }
    rc = 0;
done:
    curl_slist_free_all(hdrs);
    free(auth);
    if (h != NULL)
        curl_easy_cleanup(h);
    free(url);
    return rc;
}

void vctl_response_release(vctl_response *r)
{
    if (r == NULL)
        return;
    free(r->body);
    r->body = NULL;
    r->len = 0;
}
