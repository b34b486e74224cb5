// What the test needs of a browser: it follows redirects, keeps cookies per host and sends them
// back, and submits the auto-submitting forms that LTI's OIDC flow is made of.

export interface Page {
  url: string;
  status: number;
  body: string;
}

export interface PostForm {
  action: string;
  fields: Record<string, string>;
}

export class Browser {
  /** Cookie name to value, by host. */
  readonly cookies = new Map<string, Map<string, string>>();

  open(url: string): Promise<Page> {
    return this.request(url, 'GET');
  }

  /** Submits a page's form, as its auto-submitting script would. */
  submit(form: PostForm): Promise<Page> {
    return this.request(form.action, 'POST', new URLSearchParams(form.fields).toString());
  }

  private async request(url: string, method: string, body?: string): Promise<Page> {
    for (let redirects = 0; redirects < 10; redirects++) {
      const target = new URL(url);
      const headers: Record<string, string> = {};
      const jar = this.cookies.get(target.host);
      if (jar !== undefined && jar.size > 0) {
        headers.cookie = [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
      }
      if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
      const response = await fetch(target, { method, headers, body, redirect: 'manual' });
      this.keepCookies(target.host, response.headers.getSetCookie());
      const location = response.headers.get('location');
      if ([301, 302, 303].includes(response.status) && location !== null) {
        url = new URL(location, target).toString();
        method = 'GET';
        body = undefined;
        continue;
      }
      return { url: target.toString(), status: response.status, body: await response.text() };
    }
    throw new Error('more than 10 redirects');
  }

  private keepCookies(host: string, setCookies: string[]): void {
    for (const setCookie of setCookies) {
      const [pair = ''] = setCookie.split(';');
      const [name = '', ...value] = pair.split('=');
      const jar = this.cookies.get(host) ?? new Map<string, string>();
      jar.set(name.trim(), value.join('=').trim());
      this.cookies.set(host, jar);
    }
  }
}

/** The page's form (method post) with its hidden fields; throws when it has none. */
export function postForm(page: Page): PostForm {
  const form = /<form[^>]*method="post"[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(page.body);
  if (form === null) throw new Error(`no form on ${page.url} (status ${page.status}): ${page.body.slice(0, 200)}`);
  const fields: Record<string, string> = {};
  for (const input of form[2]!.matchAll(/<input[^>]*name="([^"]*)"[^>]*value="([^"]*)"/gi)) {
    fields[unescape(input[1]!)] = unescape(input[2]!);
  }
  return { action: new URL(unescape(form[1]!), page.url).toString(), fields };
}

function unescape(text: string): string {
  return text.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code))).replace(/&amp;/g, '&');
}
