// Swarm's service defaults (api/defaults/service.go) and the stage that fills them in.
// An absent sub-message gets all defaults; a present one is taken as written (its zeros are the user's).
import type {
  ContainerSpec,
  Placement,
  ResourceRequirements,
  RestartPolicy,
  ServiceSpec,
  TaskSpec,
  UpdateConfig,
} from '../../proto/gen/gantry/v1/objects.ts';

export const DEFAULT_STOP_GRACE_PERIOD_MS = 10_000;

export function defaultRestartPolicy(): RestartPolicy {
  return { condition: 0 /* any */, delayMs: 5_000, maxAttempts: 0, windowMs: 0 };
}

export function defaultUpdateConfig(): UpdateConfig {
  return { parallelism: 1, delayMs: 0, failureAction: 0 /* pause */, monitorMs: 5_000, maxFailureRatio: 0, order: 0 /* stop-first */ };
}

/** What the user (or the CLI) sent: anything may be missing. */
export type ServiceSpecInput = Partial<ServiceSpec>;

/** Every sub-message present, defaults filled. Not yet validated. */
export type DefaultedServiceSpec = ServiceSpec & {
  task: TaskSpec & {
    container: ContainerSpec;
    resources: ResourceRequirements;
    restart: RestartPolicy;
    placement: Placement;
  };
  mode: NonNullable<ServiceSpec['mode']>;
  update: UpdateConfig;
  rollback: UpdateConfig;
};

export function withDefaults(input: ServiceSpecInput): DefaultedServiceSpec {
  const task = input.task ?? { networks: [], runtime: '', forceUpdate: 0 };
  const container: ContainerSpec = {
    image: '',
    command: [],
    args: [],
    env: [],
    dir: '',
    user: '',
    hostname: '',
    labels: {},
    stopGracePeriodMs: 0,
    stopSignal: '',
    mounts: [],
    tty: false,
    readOnly: false,
    capAdd: [],
    capDrop: [],
    pidsLimit: 0,
    imageDigest: '',
    ...task.container,
  };
  if (!container.stopGracePeriodMs) container.stopGracePeriodMs = DEFAULT_STOP_GRACE_PERIOD_MS;
  return {
    name: input.name ?? '',
    labels: input.labels ?? {},
    endpoint: input.endpoint,
    mode: input.mode ?? { $case: 'replicated', value: { replicas: 1 } },
    update: input.update ? { ...input.update } : defaultUpdateConfig(),
    rollback: input.rollback ? { ...input.rollback } : defaultUpdateConfig(),
    task: {
      networks: task.networks ?? [],
      runtime: task.runtime ?? '',
      forceUpdate: task.forceUpdate ?? 0,
      container,
      resources: {
        limits: task.resources?.limits ?? { nanoCpus: 0, memoryBytes: 0 },
        reservations: task.resources?.reservations ?? { nanoCpus: 0, memoryBytes: 0 },
      },
      restart: task.restart ? { ...task.restart } : defaultRestartPolicy(),
      placement: {
        constraints: task.placement?.constraints ?? [],
        preferences: task.placement?.preferences ?? [],
        maxReplicas: task.placement?.maxReplicas ?? 0,
        platforms: task.placement?.platforms ?? [],
      },
    },
  };
}
