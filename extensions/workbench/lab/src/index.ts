/**
 * The AI factory's workbench in JupyterLab.
 *
 * - a status-bar item "Time left 1:23": the Slurm job's real end (the server extension asks Slurm, so an
 *   extension of the walltime on the hub's home page shows here within a minute);
 * - the walltime and idle-GPU warnings as JupyterLab notifications that stay until dismissed, with a
 *   link to the hub's home page (where the walltime is extended);
 * - the "GPUs" sidebar panel: each of the job's GPUs with its utilisation, memory and a sparkline.
 *
 * Every sentence comes from the server extension (aifactory.extensions.workbench.handlers), which is
 * where they are tested; this file only shows them.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { coursePlugin } from './course';
import liveHelpPlugin from './livehelp';

const GPU_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" ' +
  'fill="#616161"><path d="M4 6h16a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2zm0 2v8h16V8H4zm2 ' +
  '2h5v4H6v-4zm7 0h5v4h-5v-4zM6 19h2v2H6v-2zm4 0h2v2h-2v-2zm4 0h2v2h-2v-2zm4 0h2v2h-2v-2zM6 3h2v2H6V3zm4 ' +
  '0h2v2h-2V3zm4 0h2v2h-2V3zm4 0h2v2h-2V3z"/></g></svg>';
const gpuIcon = new LabIcon({ name: 'aifactory:gpu', svgstr: GPU_SVG });

const SESSION_POLL_MS = 30_000;
const RENDER_MS = 10_000;

interface ISession {
  ends_at: number | null;
  now: number;
  left: string;
  warning: string;
  idle_warning: string;
}

interface IGpu {
  index: number;
  name: string;
  utilization_percent: number | null;
  memory_used_mib: number | null;
  memory_total_mib: number | null;
  vendor: string;
}

interface IGpus {
  devices: number[];
  gpus: IGpu[];
  history: [number, [number | null, number | null][]][];
  message: string;
  idle_warning: string;
  sample_seconds: number;
}

async function getJSON<T>(path: string): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'aifactory/workbench', path);
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    throw new Error(`${path}: ${response.status} ${response.statusText}`);
  }
  return (await response.json()) as T;
}

/** The hub's home page, where a session is extended (the hub may be on another host: subdomains). */
function hubHome(): string {
  const host = PageConfig.getOption('hubHost') || '';
  const prefix = PageConfig.getOption('hubPrefix') || '/hub/';
  return host + URLExt.join(prefix, 'home');
}

/** One notification per warning: shown once, updated in place, never re-opened once the user closed it. */
class Warning {
  private id = '';
  private closed = false;
  private text = '';

  show(message: string): void {
    if (!message) {
      if (this.id) {
        Notification.dismiss(this.id);
      }
      this.id = '';
      this.closed = false;
      this.text = '';
      return;
    }
    if (this.closed || message === this.text) {
      return;
    }
    this.text = message;
    const options = {
      autoClose: false as const,
      actions: [
        {
          label: "Open the hub's home page",
          caption: hubHome(),
          callback: () => window.open(hubHome(), '_blank', 'noopener')
        }
      ]
    };
    if (this.id && Notification.update({ id: this.id, message, type: 'warning', ...options })) {
      return;
    }
    if (this.id) {
      this.closed = true; // the user dismissed it
      return;
    }
    this.id = Notification.warning(message, options);
  }
}

/** "Time left 1:23" in the status bar, counted down between the server's answers. */
class TimeLeft extends Widget {
  private endsAt: number | null = null;
  private offset = 0; // server clock minus this browser's
  private label: HTMLSpanElement;

  constructor() {
    super();
    this.addClass('aif-timeleft');
    this.id = 'aifactory-time-left';
    this.label = document.createElement('span');
    this.label.setAttribute('aria-live', 'polite');
    this.label.setAttribute('role', 'status');
    this.node.appendChild(this.label);
  }

  update(session?: ISession): void {
    if (session) {
      this.endsAt = session.ends_at;
      this.offset = session.now - Date.now() / 1000;
    }
    if (this.endsAt === null) {
      this.label.textContent = '';
      this.node.title = 'This session has no time limit';
      return;
    }
    const left = Math.max(0, this.endsAt - (Date.now() / 1000 + this.offset));
    const minutes = Math.floor(left / 60);
    const text = `Time left ${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, '0')}`;
    if (this.label.textContent !== text) {
      this.label.textContent = text;
    }
    const end = new Date(this.endsAt * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    this.node.title = `This session ends at ${end}; extend it on the hub's home page`;
    this.node.classList.toggle('aif-mod-warn', left <= 10 * 60);
  }
}

function sparkline(values: (number | null)[], max: number, cls: string): string {
  const points = values
    .map((v, i) => (v === null ? null : `${((i / Math.max(1, values.length - 1)) * 100).toFixed(1)},${(36 - (v / max) * 34 - 1).toFixed(1)}`))
    .filter(p => p !== null);
  return points.length ? `<polyline class="${cls}" points="${points.join(' ')}"/>` : '';
}

function escape(text: string): string {
  const div = document.createElement('div');
  div.textContent = text;
  return div.innerHTML;
}

function gib(mib: number | null): string {
  return mib === null ? '?' : (mib / 1024).toFixed(1);
}

/** The "GPUs" sidebar panel. */
class GpuPanel extends Widget {
  private timer = 0;
  private status: HTMLDivElement;
  private idle: HTMLDivElement;
  private list: HTMLDivElement;

  constructor(private warning: Warning) {
    super();
    this.id = 'aifactory-gpus';
    this.addClass('aif-gpus');
    this.title.icon = gpuIcon;
    this.title.caption = 'GPUs';
    this.title.label = '';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'GPUs');
    this.node.innerHTML =
      '<h2>GPUs of this session</h2><div class="aif-gpus-idle" role="alert" hidden></div>' +
      '<div class="aif-gpus-message" role="status" aria-live="polite"></div><div class="aif-gpus-list"></div>';
    this.idle = this.node.querySelector('.aif-gpus-idle') as HTMLDivElement;
    this.status = this.node.querySelector('.aif-gpus-message') as HTMLDivElement;
    this.list = this.node.querySelector('.aif-gpus-list') as HTMLDivElement;
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  async refresh(): Promise<void> {
    window.clearTimeout(this.timer);
    let wait = 5000;
    try {
      const data = await getJSON<IGpus>('gpus');
      this.render(data);
      this.warning.show(data.idle_warning);
      wait = Math.max(2000, data.sample_seconds * 1000);
    } catch (error) {
      this.status.textContent = `GPU readings unavailable: ${error}`;
    }
    if (this.isVisible) {
      this.timer = window.setTimeout(() => void this.refresh(), wait);
    }
  }

  private render(data: IGpus): void {
    this.idle.hidden = !data.idle_warning;
    this.idle.textContent = data.idle_warning;
    if (this.status.textContent !== data.message) {
      this.status.textContent = data.message;
    }
    const minutes = Math.round((data.history.length * data.sample_seconds) / 60);
    this.list.innerHTML = data.gpus
      .map((gpu, n) => {
        const util = data.history.map(([, values]) => (values[n] ? values[n][0] : null));
        const mem = data.history.map(([, values]) => (values[n] ? values[n][1] : null));
        const total = gpu.memory_total_mib || Math.max(1, ...mem.map(m => m || 0));
        const pct = gpu.utilization_percent === null ? '?' : `${Math.round(gpu.utilization_percent)} %`;
        const label =
          `Utilisation (solid) and memory (dashed) of GPU ${gpu.index} over the last ${minutes || 1} ` +
          `minute${minutes === 1 ? '' : 's'}`;
        return (
          `<section class="aif-gpu" data-index="${gpu.index}"><h3>GPU ${gpu.index}: ${escape(gpu.name)}</h3>` +
          `<dl><dt>Utilisation</dt><dd class="aif-gpu-util">${pct}</dd>` +
          `<dt>Memory</dt><dd class="aif-gpu-mem">${gib(gpu.memory_used_mib)} of ${gib(gpu.memory_total_mib)} GiB</dd></dl>` +
          `<svg role="img" aria-label="${escape(label)}" viewBox="0 0 100 36" preserveAspectRatio="none">` +
          `${sparkline(util, 100, 'aif-line-util')}${sparkline(mem, total, 'aif-line-mem')}</svg></section>`
        );
      })
      .join('');
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@aifactory/workbench:plugin',
  description: "The session's time left and warnings, and the job's GPUs.",
  autoStart: true,
  optional: [IStatusBar, ILabShell, ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    labShell: ILabShell | null,
    palette: ICommandPalette | null
  ) => {
    const walltime = new Warning();
    const idle = new Warning();

    const timeLeft = new TimeLeft();
    if (statusBar) {
      statusBar.registerStatusItem('@aifactory/workbench:time-left', { item: timeLeft, align: 'left', rank: 50 });
    }
    const poll = async () => {
      try {
        const session = await getJSON<ISession>('session');
        timeLeft.update(session);
        walltime.show(session.warning);
        idle.show(session.idle_warning);
      } catch (error) {
        console.warn('aifactory workbench: no session information', error);
      }
    };
    void poll();
    window.setInterval(() => void poll(), SESSION_POLL_MS);
    window.setInterval(() => timeLeft.update(), RENDER_MS);

    const panel = new GpuPanel(idle);
    app.shell.add(panel, 'left', { rank: 900 });
    const command = 'aifactory-workbench:show-gpus';
    app.commands.addCommand(command, {
      label: 'Show the GPUs of this session',
      execute: () => app.shell.activateById(panel.id)
    });
    if (palette) {
      palette.addItem({ command, category: 'AI Factory' });
    }
  }
};

export default [plugin, coursePlugin, liveHelpPlugin];
