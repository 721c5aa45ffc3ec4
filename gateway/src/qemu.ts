// The QEMU command line that hosts a described card's model behind the
// pciem-bridge: -machine x-remote (a PCI host with no guest CPU), the model
// from the description's "qemu" section, the bridge on a chardev socket to
// the gateway, and QMP. One place, for whoever starts the model.
import { PciemError } from './errors.js';
import type { Description } from './description.js';

export interface ModelArgsOptions {
  /** The gateway's model socket (the bridge connects to it). */
  socket: string;
  /** A UNIX socket QEMU serves QMP on. */
  qmp: string;
  /** Extra properties of the model device, after the description's (e.g. frame-log=fl). */
  deviceProps?: Record<string, string | number | boolean>;
  /** Extra QEMU arguments (chardevs those properties name, a VNC display...). */
  extra?: string[];
}

/** Arguments for qemu-system-x86_64 (without the binary). */
export function modelArgs(desc: Description, opts: ModelArgsOptions): string[] {
  if (!desc.qemu) throw new PciemError('PCIEM_ERR_INVALID', `${desc.source}: no "qemu" section says which QEMU device models the card`);
  const props = { ...desc.qemu.properties, ...opts.deviceProps };
  const device = [desc.qemu.device, 'id=card0', ...Object.entries(props).map(([k, v]) => `${k}=${typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v)}`)].join(',');
  return [
    '-machine', 'x-remote,vfio-user=off', '-nodefaults', '-display', 'none',
    ...(opts.extra ?? []),
    '-device', device,
    '-chardev', `socket,id=gw,path=${opts.socket}`,
    '-object', 'pciem-bridge,id=br0,device=card0,chardev=gw',
    '-qmp', `unix:${opts.qmp},server=on,wait=off`,
  ];
}
