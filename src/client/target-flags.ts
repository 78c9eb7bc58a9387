// The flags every client command shares: which sidecar, and which key to sign with.
import {Flags} from '@oclif/core';

export const targetFlags = {
  url: Flags.string({summary: 'Sidecar base URL (default: the first BIND address of the config).', env: 'DFFS_URL'}),
  'secret-key': Flags.string({summary: 'Key to sign with (default: from the config).', env: 'DFFS_SECRET_KEY'}),
  config: Flags.string({summary: 'Config file to read the address and key from.', env: 'DFFS_CONFIG'}),
  key: Flags.string({summary: 'Sign with this named key of the config (dffs-ctl keys lists them; default: SECRET_KEY).', exclusive: ['secret-key']}),
  ca: Flags.string({summary: 'PEM file of the CA that signed the sidecar\'s certificate, for https:// (default: the system\'s CAs).', env: 'DFFS_CA'}),
};
