package stream

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Cluster is the group as one instance sees it, for GET /v1/cluster:
// every member with its partitions and standby replicas (as the group
// coordinator has them), and this instance's own partitions and
// replicas with how far behind each is.
type Cluster struct {
	Group    string `json:"group"`
	State    string `json:"state"`    // the group's: Stable, PreparingRebalance, ...
	Protocol string `json:"protocol"` // the balancer in use: tailor-standby, or cooperative-sticky during an upgrade
	// StandbyReplicas is this instance's kafka.standby_replicas.
	StandbyReplicas int               `json:"standby_replicas"`
	Instances       []ClusterInstance `json:"instances"`
	Local           LocalPartitions   `json:"local"`
	// Segments are the segment sizes over every partition, and Quintiles
	// the RFM quintile boundaries of the whole population, as this
	// instance computes them: every instance should agree.
	Segments  map[string]int64 `json:"segments"`
	Quintiles QuintilesView    `json:"rfm_quintiles"`
}

// ClusterInstance is one member of the group.
type ClusterInstance struct {
	InstanceID string  `json:"instance_id,omitempty"`
	MemberID   string  `json:"member_id"`
	Host       string  `json:"host"`
	Advertise  string  `json:"advertise,omitempty"`
	Partitions []int32 `json:"partitions"`
	Standbys   []int32 `json:"standbys"`
	// Freshness is the changelog offset of each copy of a partition's
	// store the member had when it last joined.
	Freshness map[int32]int64 `json:"freshness,omitempty"`
	// Error says why the member's metadata could not be read (a member of
	// an older version, during a rolling upgrade).
	Error string `json:"error,omitempty"`
}

// LocalPartitions are the partitions this instance applies and those it
// keeps standby replicas of.
type LocalPartitions struct {
	Advertise  string           `json:"advertise"`
	Partitions []LocalPartition `json:"partitions"`
	Standbys   []LocalStandby   `json:"standbys"`
	Fenced     []int32          `json:"fenced"`
	Stale      []int32          `json:"stale"` // kept readable from a lost group session
}

// LocalPartition is a partition applied here.
type LocalPartition struct {
	Partition int32 `json:"partition"`
	// Next is the offset of the next event to apply; Target the end of
	// the partition when it was assigned (-1 until read).
	Next   int64 `json:"next"`
	Target int64 `json:"target"`
	// Changelog is the offset after its last committed changelog record
	// (-1 until it writes one).
	Changelog int64 `json:"changelog"`
}

// LocalStandby is a standby replica kept here.
type LocalStandby struct {
	Partition int32 `json:"partition"`
	// Changelog is the changelog offset the replica reflects.
	Changelog int64 `json:"changelog"`
}

// QuintilesView is the JSON form of RFM quintile boundaries.
type QuintilesView struct {
	Days   [4]float64 `json:"days"`
	Orders [4]float64 `json:"orders"`
	Money  [4]float64 `json:"money"`
}

// Cluster describes the group and this instance's part in it.
func (r Reads) Cluster(ctx context.Context) (Cluster, error) {
	p := r.p
	groups, err := kadm.NewClient(p.cl).DescribeGroups(ctx, p.cfg.Group)
	if err == nil {
		err = groups.Error()
	}
	if err != nil {
		return Cluster{}, fmt.Errorf("describe group %s: %w", p.cfg.Group, err)
	}
	g := groups[p.cfg.Group]
	c := Cluster{Group: g.Group, State: g.State, Protocol: g.Protocol, StandbyReplicas: p.cfg.StandbyReplicas,
		Instances: make([]ClusterInstance, 0, len(g.Members)), Segments: r.SegmentSizes()}
	for _, m := range g.Members {
		in := ClusterInstance{MemberID: m.MemberID, Host: m.ClientHost, Partitions: []int32{}, Standbys: []int32{}}
		if m.InstanceID != nil {
			in.InstanceID = *m.InstanceID
		}
		if g.Protocol != standbyProtocol {
			in.Error = "the group uses " + g.Protocol + ": members publish no standby information"
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					if t.Topic == p.cfg.Topics.Events {
						in.Partitions = append(in.Partitions, t.Partitions...)
					}
				}
			}
		} else if info, err := decodeMemberInfo(p.cfg.Topics.Events, m); err != nil {
			in.Error = err.Error()
		} else {
			in.Advertise, in.Freshness = info.Advertise, info.Freshness
			in.Partitions = append(in.Partitions, info.Active...)
			in.Standbys = append(in.Standbys, info.Standby...)
		}
		slices.Sort(in.Partitions)
		c.Instances = append(c.Instances, in)
	}
	slices.SortFunc(c.Instances, func(a, b ClusterInstance) int {
		return cmp.Or(cmp.Compare(a.InstanceID, b.InstanceID), cmp.Compare(a.MemberID, b.MemberID))
	})
	c.Local = p.localPartitions()
	q := r.Quintiles()
	c.Quintiles = QuintilesView{Days: q.Days, Orders: q.Orders, Money: q.Money}
	return c, nil
}

// localPartitions lists the partitions applied here and the replicas
// kept here.
func (p *Processor) localPartitions() LocalPartitions {
	l := LocalPartitions{Advertise: p.cfg.Advertise, Partitions: []LocalPartition{}, Standbys: []LocalStandby{}, Fenced: []int32{}, Stale: []int32{}}
	p.mu.RLock()
	for id, part := range p.parts {
		l.Partitions = append(l.Partitions, LocalPartition{Partition: id, Next: part.next.Load(), Target: part.target.Load(), Changelog: part.changelogNext.Load()})
	}
	for id := range p.fenced {
		l.Fenced = append(l.Fenced, id)
	}
	for id := range p.stale {
		l.Stale = append(l.Stale, id)
	}
	p.mu.RUnlock()
	fresh := p.standby.freshness()
	for _, id := range p.standby.ids() {
		l.Standbys = append(l.Standbys, LocalStandby{Partition: id, Changelog: fresh[id]})
	}
	slices.SortFunc(l.Partitions, func(a, b LocalPartition) int { return int(a.Partition - b.Partition) })
	slices.Sort(l.Fenced)
	slices.Sort(l.Stale)
	return l
}
