package postgres_test

import (
	"testing"

	"github.com/scopegate/scopegate/store"
	"github.com/scopegate/scopegate/store/storetest"
)

func TestSSFStreamConformance(t *testing.T) {
	testDSN(t)
	storetest.TestSSFStreams(t, func(t *testing.T) store.SSFStreamStore {
		db, _ := openTestDB(t, store.PostgresOptions{})
		return db.SSFStreams()
	})
}
