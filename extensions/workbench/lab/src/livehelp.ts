/**
 * Live help: a student shares this running server with their course's trainers, and stops sharing.
 *
 * - the "Live help" side panel (right sidebar, keyboard reachable): whose help, the address the
 *   trainer opens, "Share with my trainers" and "Stop sharing";
 * - a status-bar button "Get live help" / "Shared with trainer1" that opens the panel;
 * - the command "Get live help" (palette, AI Factory).
 *
 * Everything goes through this server's `aifactory/help` (aifactory.extensions.workbench.live_help),
 * which asks the hub; the hub decides who is asked (the course's trainers) and answers every sentence
 * of a refusal. Shown only to the server's owner while they are a student of a course.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

const HELP_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" ' +
  'fill="#616161"><path d="M9 11a4 4 0 1 1 0-8 4 4 0 0 1 0 8zm0-2a2 2 0 1 0 0-4 2 2 0 0 0 0 4zm-7 11c0-3.3 3.1-6 ' +
  '7-6s7 2.7 7 6h-2c0-2.2-2.2-4-5-4s-5 1.8-5 4H2zm15-9h2v2h2v2h-2v2h-2v-2h-2v-2h2v-2z"/></g></svg>';
const helpIcon = new LabIcon({ name: 'aifactory:live-help', svgstr: HELP_SVG });

const POLL_MS = 60_000;
export const COMMAND = 'aifactory-workbench:live-help';

interface ICourse {
  id: string;
  title: string;
  trainers: string[];
  trainers_access_servers: boolean;
}

interface IHelpState {
  sharing: boolean;
  shared_with: string[];
  course: string | null;
  since: string | null;
  courses: ICourse[];
  default_course: string | null;
  url: string;
  running: boolean;
}

interface IAnswer {
  status: number;
  body: IHelpState & { message?: string; reason?: string; choices?: string[] };
}

async function ask(method: 'GET' | 'POST' | 'DELETE', body?: object): Promise<IAnswer> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'aifactory/help');
  const init: RequestInit = { method };
  if (body) {
    init.body = JSON.stringify(body);
  }
  const response = await ServerConnection.makeRequest(url, init, settings);
  let data: any = {};
  try {
    data = await response.json();
  } catch {
    data = { message: `The server answered ${response.status}.` };
  }
  return { status: response.status, body: data };
}

function names(people: string[]): string {
  return people.length <= 1 ? people.join('') : `${people.slice(0, -1).join(', ')} and ${people[people.length - 1]}`;
}

/** The "Live help" side panel. */
export class LiveHelpPanel extends Widget {
  state: IHelpState | null = null;
  onChange: (state: IHelpState | null) => void = () => undefined;
  private intro: HTMLParagraphElement;
  private choose: HTMLDivElement;
  private select: HTMLSelectElement;
  private shareButton: HTMLButtonElement;
  private shared: HTMLDivElement;
  private who: HTMLParagraphElement;
  private urlInput: HTMLInputElement;
  private copyButton: HTMLButtonElement;
  private stopButton: HTMLButtonElement;
  private status: HTMLParagraphElement;

  constructor() {
    super();
    this.id = 'aifactory-live-help';
    this.addClass('aif-help');
    this.title.icon = helpIcon;
    this.title.caption = 'Live help';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'Live help');
    this.node.innerHTML =
      '<h2>Live help</h2>' +
      '<p class="aif-help-intro"></p>' +
      '<div class="aif-help-choose" hidden><label for="aif-help-course">Whose trainers to ask</label>' +
      '<select id="aif-help-course"></select></div>' +
      '<button type="button" class="jp-mod-styled jp-mod-accept aif-help-share">Share with my trainers</button>' +
      '<div class="aif-help-shared" hidden>' +
      '<p class="aif-help-who"></p>' +
      '<label for="aif-help-url">The address your trainer opens</label>' +
      '<div class="aif-help-url"><input id="aif-help-url" type="text" readonly>' +
      '<button type="button" class="jp-mod-styled aif-help-copy" aria-label="Copy the address">Copy</button></div>' +
      '<button type="button" class="jp-mod-styled jp-mod-warn aif-help-stop">Stop sharing</button>' +
      '</div>' +
      '<p class="aif-help-status" role="status" aria-live="polite"></p>';
    const q = (selector: string) => this.node.querySelector(selector);
    this.intro = q('.aif-help-intro') as HTMLParagraphElement;
    this.choose = q('.aif-help-choose') as HTMLDivElement;
    this.select = q('#aif-help-course') as HTMLSelectElement;
    this.shareButton = q('.aif-help-share') as HTMLButtonElement;
    this.shared = q('.aif-help-shared') as HTMLDivElement;
    this.who = q('.aif-help-who') as HTMLParagraphElement;
    this.urlInput = q('#aif-help-url') as HTMLInputElement;
    this.copyButton = q('.aif-help-copy') as HTMLButtonElement;
    this.stopButton = q('.aif-help-stop') as HTMLButtonElement;
    this.status = q('.aif-help-status') as HTMLParagraphElement;
    this.shareButton.addEventListener('click', () => void this.share());
    this.stopButton.addEventListener('click', () => void this.stop());
    this.copyButton.addEventListener('click', () => void this.copy());
    this.select.addEventListener('change', () => this.render());
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      const answer = await ask('GET');
      this.setState(answer.status === 200 ? answer.body : null);
    } catch (error) {
      this.status.textContent = `Live help is unavailable: ${error}`;
    }
  }

  private setState(state: IHelpState | null): void {
    this.state = state;
    this.render();
    this.onChange(state);
  }

  private chosen(): ICourse | undefined {
    const state = this.state;
    if (!state) {
      return undefined;
    }
    const id = state.sharing ? state.course : this.select.value || state.default_course;
    return state.courses.find(c => c.id === id);
  }

  private render(): void {
    const state = this.state;
    if (!state || !state.courses.length) {
      this.intro.textContent = 'Live help is for the students of a course.';
      this.choose.hidden = this.shared.hidden = this.shareButton.hidden = true;
      return;
    }
    if (this.select.options.length !== state.courses.length) {
      this.select.innerHTML = '';
      for (const course of state.courses) {
        this.select.add(new Option(course.title, course.id, false, course.id === state.default_course));
      }
    }
    this.choose.hidden = state.sharing || state.courses.length < 2;
    this.shareButton.hidden = state.sharing;
    this.shared.hidden = !state.sharing;
    const course = this.chosen();
    if (state.sharing) {
      this.intro.textContent =
        'Your trainer can open this server and work in it as you do (notebooks, files, terminals), with you.';
      this.who.textContent = `Shared with ${names(state.shared_with)}${course ? ` (${course.title})` : ''}.`;
      this.urlInput.value = state.url;
    } else {
      const trainers = course ? names(course.trainers) : 'your trainers';
      this.intro.textContent =
        `Stuck? Share this server with ${trainers}: they can then open it and work in it as you do (edit ` +
        'and run your notebooks with you, files, terminals) until you stop sharing or the server stops.';
      if (course && course.trainers_access_servers) {
        this.intro.textContent += ` (${course.title} lets its trainers open your servers anyway.)`;
      }
    }
  }

  async share(): Promise<void> {
    const state = this.state;
    const body = state && state.courses.length > 1 ? { course: this.select.value || state.default_course } : {};
    this.status.textContent = 'Sharing…';
    const answer = await ask('POST', body);
    if (answer.status === 200) {
      this.setState(answer.body);
      this.status.textContent =
        `Shared with ${names(answer.body.shared_with)}: they find this server on the hub's home page, or send ` +
        'them the address above.';
    } else {
      this.status.textContent = answer.body.message || `Sharing failed (${answer.status}).`;
    }
  }

  async stop(): Promise<void> {
    this.status.textContent = 'Stopping…';
    const answer = await ask('DELETE');
    if (answer.status === 200) {
      this.setState(answer.body);
      this.status.textContent = 'No longer shared: nobody else can open this server.';
      this.shareButton.focus();
    } else {
      this.status.textContent = answer.body.message || `Stopping failed (${answer.status}).`;
    }
  }

  private async copy(): Promise<void> {
    this.urlInput.select();
    try {
      await navigator.clipboard.writeText(this.urlInput.value);
      this.status.textContent = 'Address copied.';
    } catch {
      this.status.textContent = 'Select the address and copy it (Ctrl+C).';
    }
  }
}

/** The status-bar button: "Get live help" or "Shared with trainer1". */
class HelpStatus extends Widget {
  private button: HTMLButtonElement;

  constructor(open: () => void) {
    super();
    this.addClass('aif-help-status-item');
    this.button = document.createElement('button');
    this.button.type = 'button';
    this.button.className = 'aif-help-button';
    this.button.addEventListener('click', open);
    this.node.appendChild(this.button);
    this.display(null);
  }

  display(state: IHelpState | null): void {
    const sharing = !!state && state.sharing;
    this.button.textContent = sharing ? `Shared with ${names(state!.shared_with)}` : 'Get live help';
    this.button.setAttribute(
      'aria-label',
      sharing ? `Live help: this server is shared with ${names(state!.shared_with)}; open the live help panel` :
        'Get live help: share this server with your trainers'
    );
    this.node.classList.toggle('aif-mod-sharing', sharing);
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@aifactory/workbench:live-help',
  description: 'Share this server with your course trainers for live help, and stop sharing.',
  autoStart: true,
  optional: [IStatusBar, ILabShell, ICommandPalette],
  activate: async (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    labShell: ILabShell | null,
    palette: ICommandPalette | null
  ) => {
    let first: IAnswer;
    try {
      first = await ask('GET');
    } catch (error) {
      console.warn('aifactory live help: unavailable', error);
      return;
    }
    // Not this server's owner (a trainer helping), or not a student of any course: nothing to show.
    if (first.status !== 200 || !first.body.courses || !first.body.courses.length) {
      return;
    }
    const panel = new LiveHelpPanel();
    app.shell.add(panel, 'right', { rank: 900 });
    const open = () => app.shell.activateById(panel.id);
    app.commands.addCommand(COMMAND, {
      label: 'Get live help',
      caption: 'Share this server with your trainers',
      execute: open
    });
    if (palette) {
      palette.addItem({ command: COMMAND, category: 'AI Factory' });
    }
    if (statusBar) {
      const item = new HelpStatus(open);
      statusBar.registerStatusItem('@aifactory/workbench:live-help', { item, align: 'left', rank: 60 });
      panel.onChange = state => item.display(state);
      item.display(first.body);
    }
    panel.state = first.body;
    // Asked again only while it matters: the panel in view, or a share another tab may have ended.
    window.setInterval(() => {
      if (panel.isVisible || (panel.state && panel.state.sharing)) {
        void panel.refresh();
      }
    }, POLL_MS);
  }
};

export default plugin;
